"""Reading image files safely: regular files only, of bounded size, and never an image
whose header claims more pixels than :data:`MAX_PIXELS` (a decompression bomb)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ebmcore.errors import EbmError
from ebmcore.kit.files import read_regular

#: the most pixels an image file may have (100 megapixels). Decoding takes up to 4 bytes a
#: pixel whatever the file's size, so a small file that claims more (a decompression bomb)
#: is refused from its header, before it is decoded.
MAX_PIXELS = 100_000_000
#: the largest image file read: more than any 8-bit image within MAX_PIXELS takes, even uncompressed
MAX_IMAGE_FILE_BYTES = 512 * 2**20


def read_image(path: Path, mode: str) -> Image.Image:
    """The image file ``path`` decoded and converted to PIL ``mode`` (``"L"``, ``"RGB"``). A
    path that is not a regular file, not an image, or an image of more than
    :data:`MAX_PIXELS` pixels raises :class:`EbmError` naming it."""
    data = read_regular(path, limit=MAX_IMAGE_FILE_BYTES, what="an image")
    try:
        with warnings.catch_warnings():
            # PIL warns above its own limit (89 megapixels) and refuses above twice that;
            # the limit that counts is MAX_PIXELS, checked below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise EbmError(f"{path}: {width}×{height} pixels, more than the {MAX_PIXELS:,} an image "
                           "may have; refusing to decode it")
        return img.convert(mode)
    except Image.DecompressionBombError as exc:
        raise EbmError(f"{path}: refusing to decode it: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise EbmError(f"{path}: cannot read image: {exc}") from None
