"""Data files that are not what they claim: devices, FIFOs, gzip bombs, images whose header
claims billions of pixels, folders that cannot be read. Each is an EbmError naming the file,
found before anything large is read, decompressed or decoded."""

import gzip
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
from ebm_image import FolderData, ImageFolderConfig, IdxConfig, IdxData, read_idx
from ebmcore.kit.images import MAX_PIXELS
from ebm_image.texture import load_exemplar
from PIL import Image

from ebmcore import EbmError


def idx_header(*dims: int) -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def test_idx_devices_and_fifos_are_refused_without_reading(tmp_path, within_seconds):
    fifo = tmp_path / "images.idx"
    os.mkfifo(fifo)
    with pytest.raises(EbmError, match="images.idx: a FIFO, not a regular file"):
        read_idx(fifo)
    with pytest.raises(EbmError, match="/dev/zero: a device, not a regular file"):
        IdxData.from_config(IdxConfig(images="/dev/zero"))


def test_a_gzip_bomb_is_refused_after_decompressing_no_more_than_its_dimensions_need(tmp_path):
    bomb = tmp_path / "bomb.idx.gz"
    zeros = gzip.compress(bytes(2**24))  # 16 MiB of zeros in 16 KiB; gzip members concatenate
    # a header that claims 2 × 4 × 4 bytes, then 2 GiB of zeros in a 2 MiB file
    bomb.write_bytes(gzip.compress(idx_header(2, 4, 4) + bytes(2**24)) + zeros * 127)
    assert bomb.stat().st_size < 4 * 2**20
    with pytest.raises(EbmError, match=r"bomb.idx.gz: oversized IDX file: dimensions \(2, 4, 4\) need 48 bytes, "
                                       "file decompresses to more"):
        read_idx(bomb)


def test_dimensions_larger_than_memory_are_refused_before_decompressing(tmp_path):
    claim = tmp_path / "claim.idx.gz"
    claim.write_bytes(gzip.compress(idx_header(100_000, 100_000, 1000)))  # 10 TB of pixels
    with pytest.raises(EbmError, match=r"claim.idx.gz: needs an estimated .* TiB \(an IDX file of dimensions "
                                       r"\(100000, 100000, 1000\)\), more than the .* of memory available"):
        read_idx(claim)


def test_gzip_files_of_several_members_still_read(tmp_path):
    images = np.arange(32, dtype=np.uint8).reshape(2, 4, 4)
    data = idx_header(2, 4, 4) + images.tobytes()
    two = tmp_path / "two-members.gz"
    two.write_bytes(gzip.compress(data[:20]) + gzip.compress(data[20:]))
    assert np.array_equal(read_idx(two), images)


def test_resizing_beyond_memory_names_the_size_key(tmp_path):
    plain = tmp_path / "images.idx"
    plain.write_bytes(idx_header(2, 4, 4) + bytes(32))
    with pytest.raises(EbmError, match=r"\$\.data\.size: needs an estimated .* \(2 images resized to "
                                       "1000000×1000000\\)"):
        IdxData.from_config(IdxConfig(images=str(plain), size=1_000_000))


def png_claiming(path, width: int, height: int) -> None:
    """A tiny PNG whose header (IHDR, its CRC fixed) claims ``width × height`` pixels."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(data[ihdr:ihdr + 17]))
    path.write_bytes(bytes(data))


def test_an_image_claiming_more_pixels_than_the_limit_is_refused_from_its_header(tmp_path):
    png_claiming(tmp_path / "big.png", 12_000, 9_000)  # above MAX_PIXELS, below PIL's own refusal
    assert 12_000 * 9_000 > MAX_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning is not shown: ours is the error
        with pytest.raises(EbmError, match="big.png: 12000×9000 pixels, more than the 100,000,000 an image may "
                                           "have; refusing to decode it"):
            FolderData.from_config(ImageFolderConfig(root=str(tmp_path)))


def test_a_400_megapixel_decompression_bomb_is_refused(tmp_path):
    png_claiming(tmp_path / "bomb.png", 20_000, 20_000)
    with pytest.raises(EbmError, match="bomb.png: refusing to decode it: .*decompression bomb"):
        load_exemplar(path=str(tmp_path / "bomb.png"))


def test_a_texture_path_that_is_a_device_or_a_fifo_is_refused(tmp_path, within_seconds):
    fifo = tmp_path / "texture.png"
    os.mkfifo(fifo)
    with pytest.raises(EbmError, match="texture.png: a FIFO, not a regular file; refusing to read it as an image"):
        load_exemplar(path=str(fifo))
    with pytest.raises(EbmError, match="/dev/zero: a device, not a regular file"):
        load_exemplar(path="/dev/zero")


def test_an_image_folder_that_cannot_be_walked_is_named():
    # /proc holds entries no one may read (other processes' cwd); as root, at least no images
    with pytest.raises(EbmError, match="/proc.*(cannot read the image folder /proc|no images found)"):
        FolderData.from_config(ImageFolderConfig(root="/proc"))
