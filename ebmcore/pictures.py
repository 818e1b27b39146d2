"""Pictures every image-like modality needs: a grid of samples as one PNG."""

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def image_grid_png(x: torch.Tensor, path: Path, *, columns: int = 8, scale: int = 4, limit: int = 64) -> None:
    """Up to ``limit`` images ``(B, C, H, W)`` (C = 1 or 3), values clamped to [−1, 1], as one PNG grid.

    Images are separated by a one-pixel white border and enlarged ``scale`` times (nearest).
    """
    x = x[:limit].detach().float().cpu()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    x = x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    b, c, h, w = x.shape
    columns = max(1, min(columns, b))
    rows = math.ceil(b / columns)
    canvas = torch.full((c, rows * (h + 1) + 1, columns * (w + 1) + 1), 255, dtype=torch.uint8)
    for i in range(b):
        r, k = divmod(i, columns)
        top, left = 1 + r * (h + 1), 1 + k * (w + 1)
        canvas[:, top:top + h, left:left + w] = x[i]
    array = np.ascontiguousarray(canvas.permute(1, 2, 0).numpy())
    img = Image.fromarray(array[..., 0] if c == 1 else array)  # uint8: "L" or "RGB"
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(Path(path))
