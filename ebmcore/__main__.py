from ebmcore.train.cli import main

raise SystemExit(main())
