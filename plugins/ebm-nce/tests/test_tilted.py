"""A RealNVP tilted by an energy (``tilted_flow``), learned by importance-sampled maximum
likelihood (``snis_mle``), with log Z by AIS from its flow: known answers on Gaussians."""

import math

import pytest
import torch
from ebm_nce import FlowReference, ImportanceMLE, RealNVP, TiltedFlow, fit_flow
from torch import nn

from ebmcore import Batch, BuildContext, Energy, EbmError, RecipeError
from ebmcore.kit.likelihood import ais, geometric_betas


class Linear(Energy):
    """g(x) = a·x: tilts N(μ, diag σ²) into N(μ − σ²a, diag σ²), log Z = Σ(σ²a²/2 − aμ)."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.as_tensor(a, dtype=torch.float32))

    def forward(self, x, cond=None):
        return x.flatten(1) @ self.a


def gaussian_flow(mean, std):
    """An untrained RealNVP: its couplings are the identity, so it is N(mean, diag std²)."""
    mean, std = torch.tensor(mean), torch.tensor(std)
    return RealNVP((len(mean),), layers=2, hidden=(8,), loc=mean, scale=std)


class _Data:
    def __init__(self, x):
        self.x = x

    def dataset(self):
        return Batch(self.x)


def test_the_energy_is_the_flows_negative_log_density_plus_the_tilt():
    flow = gaussian_flow([0.5, -1.0], [1.0, 2.0])
    energy = TiltedFlow(flow, Linear([0.3, -0.2]))
    x = torch.randn(16, 2)
    exact = torch.distributions.Normal(flow.loc, flow.std).log_prob(x).sum(1)
    torch.testing.assert_close(energy.reference(x), -exact)
    torch.testing.assert_close(energy(x), -exact + energy.tilt(x))
    assert not any(p.requires_grad for p in energy.reference.parameters())  # the flow is frozen
    assert energy.reference.sample(5, rng=torch.Generator().manual_seed(0)).shape == (5, 2)


def test_ais_from_the_flow_finds_the_log_partition_of_a_linear_tilt():
    mean, std, a = [0.5, -1.0, 0.0], [1.0, 0.5, 2.0], torch.tensor([0.4, -0.6, 0.25])
    energy = TiltedFlow(gaussian_flow(mean, std), Linear(a))
    exact = float((torch.tensor(std) ** 2 * a**2 / 2 - a * torch.tensor(mean)).sum())
    hmc = BuildContext().build("sampler", "hmc", step_size=0.2, n_leapfrog=5, n_steps=1)
    est = ais(energy, energy.reference, hmc, n_chains=256, betas=geometric_betas(50, power=1.0),
              rng=torch.Generator().manual_seed(0))
    assert est.log_z == pytest.approx(exact, abs=0.02), (est.log_z, exact)


def test_importance_sampled_maximum_likelihood_learns_the_tilt_of_a_shifted_gaussian():
    """Data N(0.5, 1) against the flow N(0, 1): the likelihood's optimum is g(x) = −0.5·x."""
    gen = torch.Generator().manual_seed(0)
    data = 0.5 + torch.randn(20_000, 1, generator=gen)
    energy = TiltedFlow(gaussian_flow([0.0], [1.0]), Linear([0.0]))
    objective = ImportanceMLE(energy, (1,), proposals=4096)
    opt = torch.optim.Adam(energy.g.parameters(), lr=0.02)
    for _ in range(300):
        losses, metrics = objective.loss(Batch(data[torch.randint(len(data), (512,), generator=gen)]), rng=gen)
        opt.zero_grad()
        losses["energy"].backward()
        opt.step()
    assert float(energy.g.a.detach()) == pytest.approx(-0.5, abs=0.05)
    # the weights' ESS share, exactly E_q[w]²/E_q[w²] = exp(−a²σ²) = exp(−0.25) at the optimum
    assert float(metrics["snis/ess"]) == pytest.approx(math.exp(-0.25), abs=0.04)
    samples = objective.sample(4000, rng=gen)
    assert samples.shape == (4000, 1) and float(samples.mean()) == pytest.approx(0.5, abs=0.08)


def test_the_flow_fitted_at_build_time_is_seeded_and_learns():
    z = torch.randn(512, 2, generator=torch.Generator().manual_seed(0))
    x = torch.stack([z[:, 0], z[:, 0] ** 2 + 0.1 * z[:, 1]], 1)  # a banana
    flows = []
    for steps in (0, 100, 100):
        torch.manual_seed(0)  # the couplings' initial weights (a run seeds them before building)
        flows.append(fit_flow(RealNVP.fitted(x, 4, (16,), 0.1), x, steps=steps, lr=1e-2, batch=128,
                              bin_width=0.0, seed=1))
    with torch.no_grad():
        nll = [-float(f.log_prob(x).mean()) for f in flows]
    assert nll[1] < nll[0] - 0.5  # the curve a diagonal Gaussian misses
    assert nll[1] == nll[2]


def test_recipe_errors_name_the_tilts_keys_and_refuse_untilted_energies():
    ctx = BuildContext(event_shape=(2,), built={"data": _Data(torch.randn(64, 2))})
    energy = ctx.build("energy", "tilted_flow", tilt_options={"hidden": [8]}, flow_layers=2,
                       flow_hidden=[8], flow_steps=2)
    assert isinstance(energy.reference, FlowReference)
    with pytest.raises(RecipeError, match=r"tilt_options \(tilt 'mlp'\)\.hiden"):
        ctx.build("energy", "tilted_flow", tilt_options={"hiden": [8]})
    ctx.built["energy"] = ctx.build("energy", "mlp")
    with pytest.raises(EbmError, match="snis_mle' needs an energy that tilts a normalised reference"):
        ctx.build("objective", "snis_mle")
    assert math.isfinite(float(energy(torch.zeros(1, 2))))


def test_loglik_from_the_reference_scores_the_tilted_model_beside_the_flow_alone(tmp_path):
    ctx = BuildContext(event_shape=(2,))
    data = ctx.build("data", "toy2d", name="eight_gaussians", n_train=500, n_test=200)
    a = torch.tensor([0.3, -0.5])
    energy = TiltedFlow(gaussian_flow([0.0, 0.0], [1.0, 1.0]), Linear(a))  # the model is N(−a, I)
    ctx.built.update(data=data, energy=energy)
    task = ctx.build("task", "loglik", base="reference", chains=256, betas=50, power=1.0, settle_steps=5,
                     kernel_options={"step_size": 0.3, "n_leapfrog": 5, "n_steps": 1})
    m = task.run(None, data, rng=torch.Generator().manual_seed(0), out=tmp_path)
    x = data.heldout().x
    exact = torch.distributions.Normal(-a, 1.0).log_prob(x).sum(1).mean()
    flow_alone = torch.distributions.Normal(torch.zeros(2), 1.0).log_prob(x).sum(1).mean()
    assert m["nats/ais"] == pytest.approx(float(exact), abs=0.02)
    assert m["nats/raise"] == pytest.approx(float(exact), abs=0.02)
    assert m["nats/reference"] == pytest.approx(float(flow_alone), abs=1e-4)
    ctx.built["energy"] = ctx.build("energy", "mlp")
    with pytest.raises(EbmError, match="base = 'reference' needs an energy that tilts"):
        ctx.build("task", "loglik", base="reference").run(None, data, rng=torch.Generator(), out=tmp_path)
