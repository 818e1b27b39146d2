"""What the shape tests share: folders of mesh files written by the test."""

import pytest
import torch
from ebm_shapes.meshes import PRIMITIVES, primitive_mesh, primitive_parameters, write_off


@pytest.fixture
def mesh_folder(tmp_path):
    """``make(copies, segments)``: a folder of ``copies`` × the five primitives as .off files
    (proportions from seed 0), named in order."""
    def make(copies: int = 2, segments: int = 12):
        g = torch.Generator().manual_seed(0)
        folder = tmp_path / "meshes"
        folder.mkdir()
        for i, kind in enumerate(PRIMITIVES * copies):
            write_off(folder / f"{i:02d}-{kind}.off",
                      *primitive_mesh(kind, primitive_parameters(kind, g), segments=segments))
        return folder
    return make
