"""Trajectories for ebm: windows ``(time, channels)`` with an observed part — motion capture
(``mocap``: BVH or CSV, Debian's CMU clips) and a synthetic 2-D navigation world with a known
cost (``navigation``) — a temporal ConvNet cost ``temporal_convnet``, conditional maximum
likelihood with masked Langevin chains (``conditional_mle``: energy-based continuous inverse
optimal control, Xu et al. 2022), ranking NCE against retrieved futures (``retrieval_nce``: a
cost that ranks the futures of the nearest training windows), and the tasks ``forecast`` (MDE
beside constant velocity and nearest neighbour) and ``plan`` (rank correlation with the true
cost; planned paths beside the expert's)."""

from ebm_trajectory.data import MocapConfig, MocapData, NavigationConfig, NavigationData, TrajectoryData
from ebm_trajectory.energies import SceneCost, SceneCostConfig, TemporalConvNet, TemporalConvNetConfig
from ebm_trajectory.guess import guess
from ebm_trajectory.io import Motion, joint_positions, read_bvh, read_csv
from ebm_trajectory.objectives import ConditionalMLE, ConditionalMLEConfig
from ebm_trajectory.retrieval import RetrievalNCE, RetrievalNCEConfig, nearest_neighbours
from ebm_trajectory.tasks import Forecast, ForecastConfig, Plan, PlanConfig, spearman
from ebmcore import Component, hookimpl

__all__ = ["ConditionalMLE", "ConditionalMLEConfig", "Forecast", "ForecastConfig", "MocapConfig", "MocapData",
           "Motion", "NavigationConfig", "NavigationData", "Plan", "PlanConfig", "RetrievalNCE",
           "RetrievalNCEConfig", "SceneCost", "SceneCostConfig", "TemporalConvNet",
           "TemporalConvNetConfig", "TrajectoryData", "guess", "joint_positions", "nearest_neighbours", "read_bvh",
           "read_csv", "spearman"]


@hookimpl
def ebm_components():
    return [
        Component("data", "mocap", MocapConfig, MocapData.from_config),
        Component("data", "navigation", NavigationConfig, NavigationData.from_config),
        Component("energy", "temporal_convnet", TemporalConvNetConfig, TemporalConvNet.from_config),
        Component("energy", "scene_cost", SceneCostConfig, SceneCost.from_config),
        Component("objective", "conditional_mle", ConditionalMLEConfig, ConditionalMLE.from_config,
                  requires=("energy", "sampler")),
        Component("objective", "retrieval_nce", RetrievalNCEConfig, RetrievalNCE.from_config, requires=("energy",)),
        Component("task", "forecast", ForecastConfig, Forecast.from_config, requires=("energy",)),
        Component("task", "plan", PlanConfig, Plan.from_config, requires=("energy",)),
    ]
