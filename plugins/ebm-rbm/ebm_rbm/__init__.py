"""Restricted Boltzmann machines for ebm: energies ``rbm`` and ``gaussian_rbm`` (the free
energy), the block Gibbs sampler ``gibbs``, log Z exactly and by AIS, pseudo-log-likelihood,
the task ``rbm_filters``, and deep belief networks (objective ``dbn``, task ``dbn_bound``)."""

from ebm_rbm.dbn import Bound, BoundConfig, DBNConfig, DeepBeliefNet
from ebm_rbm.energies import (
    BernoulliRBM,
    BipartiteEnergy,
    GaussianRBM,
    RBMConfig,
    RBMParams,
)
from ebm_rbm.gibbs import Gibbs, GibbsConfig, GibbsState
from ebm_rbm.partition import (
    ais_log_partition,
    exact_log_partition,
    pseudo_log_likelihood,
    rbm_betas,
)
from ebm_rbm.tasks import Filters, FiltersConfig
from ebmcore import Component, hookimpl

__all__ = ["BernoulliRBM", "BipartiteEnergy", "Bound", "BoundConfig", "DBNConfig", "DeepBeliefNet", "Filters",
           "FiltersConfig", "GaussianRBM", "Gibbs", "GibbsConfig", "GibbsState", "RBMConfig", "RBMParams", "ais_log_partition", "exact_log_partition",
           "pseudo_log_likelihood", "rbm_betas"]


@hookimpl
def ebm_components():
    return [
        Component("energy", "rbm", RBMConfig, BernoulliRBM.from_config),
        Component("energy", "gaussian_rbm", RBMConfig, GaussianRBM.from_config),
        Component("sampler", "gibbs", GibbsConfig, Gibbs.from_config),
        Component("task", "rbm_filters", FiltersConfig, Filters.from_config, requires=("energy",)),
        Component("objective", "dbn", DBNConfig, DeepBeliefNet.from_config, requires=("energy", "sampler")),
        Component("task", "dbn_bound", BoundConfig, Bound.from_config, requires=("objective",)),
    ]
