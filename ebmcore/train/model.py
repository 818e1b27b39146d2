"""A trained run as one Python object: ``ebmcore.load(run_dir)``.

The run directory's latest checkpoint, built from its own recipe: the energy, draws from
the objective's own chains (what ``ebm sample`` draws), and the normalised log-density
where the run estimated log Z. A task estimates log Z by reporting a metric
``log_z/<estimator>`` (the ``loglik`` task of ebm-likelihood does: ``ais``, ``raise``,
``quadrature``, an RBM's ``exact``); the model reads the estimates recorded in
``metrics.jsonl`` at its checkpoint's step — the final record holds the tasks' metrics, an
evaluation record those of a task run at every evaluation.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ebmcore.errors import EbmError
from ebmcore.plugins import PluginHost
from ebmcore.train.log import MetricsLog
from ebmcore.train.recipe import Recipe
from ebmcore.train.run import Run

#: the metric name a task reports an estimate of log Z under: ``<label>/log_z/<estimator>``
LOG_Z = "/log_z/"


class Model:
    """A trained model (see the module doc). ``energy(x)``, ``sample(n)``, ``log_prob(x)``;
    ``to(device)`` returns the same model on another device. Read-only: the run directory
    is not written, and a run still training may be loaded (its latest checkpoint)."""

    def __init__(self, run: Run, overrides: list[str] = ()):
        #: the run, opened with ``overrides`` (kept to reopen it elsewhere: :meth:`to`)
        self._run, self._overrides = run, list(overrides)
        #: the run's recipe, as trained (with any overrides given to :meth:`load`)
        self.recipe: Recipe = run.recipe
        #: the checkpoint's step
        self.step: int = run.step
        #: the run's estimates of log Z at this step, by ``<task label>/log_z/<estimator>``
        self.log_z: dict[str, float] = log_z_estimates(MetricsLog(run.out / "metrics.jsonl"), run.step)

    @classmethod
    def load(cls, run_dir: str | Path, *, device: str | None = None, overrides: list[str] = (),
             host: PluginHost | None = None) -> Model:
        """The run in ``run_dir`` at its latest checkpoint, built on ``device`` (default the
        run's own), with ``overrides`` (``--set`` strings, e.g. a longer sampler chain). As
        ``ebm sample`` does, it applies the recipe's ``run.threads`` (torch's, process-wide)."""
        sets = [*overrides, *([f"run.device='{device}'"] if device is not None else [])]
        return cls(Run.open(run_dir, host=host, overrides=sets), overrides)

    @property
    def run_dir(self) -> Path:
        return self._run.out

    @property
    def device(self) -> torch.device:
        return self._run.device

    @property
    def energy_module(self) -> nn.Module:
        """The recipe's ``[energy]`` (in eval mode): over the data, or over latents for a
        latent-prior model (its ``over_data`` is False)."""
        return self._run.ctx.built["energy"]

    @property
    def objective(self) -> nn.Module:
        return self._run.objective

    @property
    def data(self):
        """The run's data component: event shape, held-out split, ``evaluate``, pictures."""
        return self._run.data

    def energy(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """E(x) per example, ``(batch,)``, on the model's device (no gradient)."""
        with torch.no_grad():
            return self.energy_module(x.to(self.device), None if cond is None else cond.to(self.device))

    def sample(self, n: int, *, seed: int = 0, cond: Tensor | None = None) -> Tensor:
        """``n`` samples by the objective's fresh chains, seeded as ``ebm sample --seed``
        (the same seed gives the same samples), on the CPU."""
        if n < 1:
            raise EbmError(f"n must be at least 1, got {n}")
        rng = torch.Generator(device=self.device).manual_seed(seed)
        return self.objective.sample(n, rng=rng, cond=None if cond is None else cond.to(self.device)).cpu()

    def log_prob(self, x: Tensor, cond: Tensor | None = None, *, log_z: float | str | None = None) -> Tensor:
        """log p(x) = −E(x) − log Z per example. ``log_z``: a number, or a key of
        :attr:`log_z`; by default the estimate named ``exact`` if there is one, else the
        largest (the most conservative log-likelihood: forward AIS underestimates log Z)."""
        if not self.energy_module.over_data:
            raise EbmError(f"{self.run_dir}: the energy is a prior over latents, not a density over the data")
        return -self.energy(x, cond).double() - self._log_z(log_z)

    def _log_z(self, chosen: float | str | None) -> float:
        if isinstance(chosen, (int, float)):
            return float(chosen)
        if chosen is not None:
            if chosen not in self.log_z:
                raise EbmError(f"log_z '{chosen}': not an estimate of this run (it has: "
                               f"{', '.join(self.log_z) or 'none'})")
            return self.log_z[chosen]
        if not self.log_z:
            raise EbmError(f"{self.run_dir}: no estimate of log Z at step {self.step}. Add a task that estimates "
                           "it to the recipe before training ([tasks.loglik] type = \"loglik\", from "
                           "ebm-likelihood; every_evaluation = true records it at each evaluation), or "
                           f"run `ebm eval {self.run_dir} --set tasks.loglik.type=loglik` and pass the "
                           "log_z/... value it prints as log_prob(x, log_z=...)")
        exact = [k for k in self.log_z if k.endswith(LOG_Z + "exact")]
        return self.log_z[exact[0]] if exact else max(self.log_z.values())

    def to(self, device: str | torch.device) -> Model:
        """This model on ``device``, rebuilt there from the same checkpoint (the same
        object if it is there already)."""
        if torch.device(device) == self.device:
            return self
        return Model.load(self.run_dir, device=str(device), overrides=self._overrides, host=self._run.host)

    def __repr__(self) -> str:
        return f"Model({str(self.run_dir)!r}, step={self.step}, device={self.device})"


def log_z_estimates(log: MetricsLog, step: int) -> dict[str, float]:
    """The metrics ``<label>/log_z/<estimator>`` recorded at ``step`` (the last such record)."""
    found: dict[str, float] = {}
    for record in log.records():
        if record["step"] == step:
            found.update({k: float(v) for k, v in record.items() if LOG_Z in k})
    return found
