"""Pictures of clips ``(N, C, T, H, W)``: a grid with one clip per row and its frames left
to right, and an animated GIF whose every frame shows all the clips at one time."""

from __future__ import annotations

from pathlib import Path

from einops import rearrange
from torch import Tensor

from ebmcore.kit.files import write_via
from ebmcore.kit.pictures import image_grid, image_grid_png

#: clips shown (rows of the grid; clips in the GIF)
SHOWN = 8


def clips_png(x: Tensor, path: Path, *, shown: int = SHOWN) -> None:
    """One row per clip (at most ``shown``), its frames left to right."""
    x = x[:shown]
    frames = x.shape[2]
    image_grid_png(rearrange(x, "n c t h w -> (n t) c h w"), path, columns=frames, limit=len(x) * frames)


def clips_gif(x: Tensor, path: Path, *, shown: int = SHOWN, fps: float = 8.0) -> None:
    """An animated GIF (looping) of up to ``shown`` clips side by side."""
    x = x[:shown]
    pictures = [image_grid(x[:, :, t], columns=len(x), limit=len(x)) for t in range(x.shape[2])]
    write_via(Path(path), lambda tmp: pictures[0].save(tmp, format="GIF", save_all=True,
                                                       append_images=pictures[1:], duration=round(1000 / fps),
                                                       loop=0))
