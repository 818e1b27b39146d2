import sys

from ebmcore.cli import main

sys.exit(main())
