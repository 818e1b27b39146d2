"""JEM for ebm (Grathwohl et al. 2020, "Your classifier is secretly an energy based model"):
the objective ``jem`` (cross-entropy plus maximum likelihood of E(x) = −logsumexp f(x),
with weight 0 the plain classifier) and the task ``classify`` (accuracy, calibration and
out-of-distribution AUROC of the energy read as a classifier)."""

from ebm_jem.calibration import (
    calibration_bins,
    expected_calibration_error,
    reliability_png,
)
from ebm_jem.objective import JEM, JEMConfig, class_energies
from ebm_jem.tasks import Classify, ClassifyConfig
from ebmcore import Component, hookimpl

__all__ = ["JEM", "Classify", "ClassifyConfig", "JEMConfig", "calibration_bins", "class_energies",
           "expected_calibration_error", "reliability_png"]


@hookimpl
def ebm_components():
    return [
        Component("objective", "jem", JEMConfig, JEM.from_config, requires=("energy", "sampler", "generator")),
        Component("task", "classify", ClassifyConfig, Classify.from_config),
    ]
