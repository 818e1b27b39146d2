"""Samplers that return more rows than chains (:attr:`ebmcore.Sampler.replicas`)."""

from __future__ import annotations

from ebmcore.errors import EbmError
from ebmcore.interfaces import Sampler


def one_row_per_chain(sampler: Sampler, who: str) -> Sampler:
    """``sampler``, refused where it returns auxiliary rows beside the target's chains
    (parallel tempering with ``return_all``) to ``who``, which would take every row it
    returns as a sample of the model."""
    if sampler.replicas != 1:
        raise EbmError(f"{who} takes every row the sampler returns as a sample of the model, and this sampler "
                       f"returns {sampler.replicas} per chain (parallel_tempering with return_all = true: its "
                       "hotter replicas too); set return_all = false, or train with objective 'mle', which keeps "
                       "the replicas in its generator and scores the temperature-1 chains")
    return sampler
