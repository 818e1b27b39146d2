"""Voxel shapes for ebm: occupancy grids ``(1, R, R, R)`` as data — ``shapes`` (procedural
boxes, cylinders, cones, tori and spheres, labelled) and ``meshes`` (mesh files through
trimesh, or CGAL's models) — the 3-D descriptor net ``voxelnet`` (Xie et al. 2018), and the
tasks ``voxel_recover`` (missing cells), ``voxel_superres`` (16³ → 32³) and ``voxel_probe``
(a linear probe on the energy's features; class-conditional samples); and point clouds
``(N, 3)``: data ``pointclouds``, the permutation-invariant energy ``pointnet`` (Generative
PointNet, Xie et al. 2021), Chamfer metrics and the task ``pointcloud_reconstruct``, with a
completion model for it: the energy ``point_field`` of the missing points given the observed
ones, learned by the objective ``point_completion_dsm`` (ShapeGF's gradient field, Cai et al.
2020, conditioned on the observed half)."""

from ebm_shapes.chamfer import ChamferMetrics, chamfer, chamfer_matrix, mmd_coverage
from ebm_shapes.data import (
    MeshData,
    MeshesConfig,
    ShapesConfig,
    ShapesData,
    VoxelData,
    signed,
)
from ebm_shapes.energies import VoxelNet, VoxelNetConfig
from ebm_shapes.meshes import procedural_shapes, read_mesh, voxelize_mesh
from ebm_shapes.metrics import ShapeMetrics, iou, iou_matrix
from ebm_shapes.pictures import views_png, voxels_png
from ebm_shapes.point_field import (
    PointCompletionDSM,
    PointCompletionDSMConfig,
    PointField,
    PointFieldConfig,
    point_condition,
)
from ebm_shapes.point_tasks import PointReconstruct, PointReconstructConfig
from ebm_shapes.pointnet import PointNetConfig, PointNetEnergy
from ebm_shapes.points import (
    PointCloudData,
    PointCloudsConfig,
    procedural_clouds,
)
from ebm_shapes.tasks import (
    ProbeConfig,
    RecoverConfig,
    SuperResConfig,
    VoxelProbe,
    VoxelRecover,
    VoxelSuperRes,
    closing,
    nearest_training,
)
from ebmcore import Component, hookimpl

__all__ = ["ChamferMetrics", "MeshData", "MeshesConfig", "PointCloudData", "PointCloudsConfig",
           "PointCompletionDSM", "PointCompletionDSMConfig", "PointField", "PointFieldConfig", "PointNetConfig",
           "PointNetEnergy", "PointReconstruct", "PointReconstructConfig", "ProbeConfig", "RecoverConfig",
           "ShapeMetrics", "ShapesConfig", "ShapesData", "SuperResConfig", "VoxelData", "VoxelNet", "VoxelNetConfig",
           "VoxelProbe", "VoxelRecover", "VoxelSuperRes", "chamfer", "chamfer_matrix", "closing",
           "iou", "iou_matrix", "mmd_coverage", "nearest_training", "point_condition", "procedural_clouds",
           "procedural_shapes", "read_mesh", "signed", "views_png", "voxelize_mesh", "voxels_png"]


@hookimpl
def ebm_components():
    return [
        Component("data", "shapes", ShapesConfig, ShapesData.from_config),
        Component("data", "meshes", MeshesConfig, MeshData.from_config),
        Component("energy", "voxelnet", VoxelNetConfig, VoxelNet.from_config),
        Component("task", "voxel_recover", RecoverConfig, VoxelRecover.from_config, requires=("energy", "sampler")),
        Component("task", "voxel_superres", SuperResConfig, VoxelSuperRes.from_config,
                  requires=("energy", "sampler")),
        Component("task", "voxel_probe", ProbeConfig, VoxelProbe.from_config, requires=("energy",)),
        Component("data", "pointclouds", PointCloudsConfig, PointCloudData.from_config),
        Component("energy", "pointnet", PointNetConfig, PointNetEnergy.from_config),
        Component("energy", "point_field", PointFieldConfig, PointField.from_config),
        Component("objective", "point_completion_dsm", PointCompletionDSMConfig, PointCompletionDSM.from_config,
                  requires=("energy",)),
        Component("task", "pointcloud_reconstruct", PointReconstructConfig, PointReconstruct.from_config,
                  requires=("energy", "generator")),
    ]
