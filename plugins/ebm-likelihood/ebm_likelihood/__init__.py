"""Likelihoods for ebm: the ``loglik`` task (held-out log-likelihood of any trained energy,
log Z by forward and reverse annealed importance sampling)."""

from ebm_likelihood.tasks import LogLik, LogLikConfig
from ebmcore import Component, hookimpl

__all__ = ["LogLik", "LogLikConfig"]


@hookimpl
def ebm_components():
    return [Component("task", "loglik", LogLikConfig, LogLik.from_config, requires=("energy",))]
