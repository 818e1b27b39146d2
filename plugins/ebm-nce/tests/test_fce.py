import math

import pytest
import torch
from ebm_langevin import Langevin
from ebm_nce import FlowContrastive, RealNVP
from torch import nn

from ebmcore import Batch, BuildContext, EbmError, Energy, RecipeError, build


def _random_flow(dim=2, seed=0):
    """A RealNVP far from the identity: every weight drawn at random (the last layers too)."""
    torch.manual_seed(seed)
    flow = RealNVP((dim,), layers=4, hidden=(16,), loc=torch.tensor([0.5, -0.3]), scale=torch.tensor([1.5, 0.7]))
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0, 0.7)
    return flow


def test_realnvp_density_integrates_to_one_on_a_grid():
    flow = _random_flow()
    side = torch.linspace(-12, 12, 801)
    grid = torch.cartesian_prod(side, side)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum().item() * (side[1] - side[0]).item() ** 2
    assert mass == pytest.approx(1.0, abs=0.01)


def test_realnvp_inverts_exactly_and_its_log_det_is_the_jacobians():
    flow = _random_flow()
    x, log_q = flow.sample(64, rng=torch.Generator().manual_seed(1))
    assert torch.allclose(flow.log_prob(x), log_q, atol=1e-4)
    # log q(x) = log N(z) + log|det ∂z/∂x|, the Jacobian of the inverse by autograd
    def inverse(v):
        u = ((v - flow.loc) / flow.std).unsqueeze(0)
        for layer in reversed(flow.couplings):
            u, _ = layer.inverse(u)
        return u.squeeze(0)

    for point in x[:5].detach():
        z = inverse(point)
        jac = torch.autograd.functional.jacobian(inverse, point)
        expected = -0.5 * z.pow(2).sum() - math.log(2 * math.pi) + torch.linalg.slogdet(jac)[1]
        assert flow.log_prob(point.unsqueeze(0)).item() == pytest.approx(expected.item(), abs=1e-4)


def test_an_untrained_flow_is_the_fitted_diagonal_gaussian():
    x = torch.tensor([2.0, -1.0]) + torch.tensor([0.5, 3.0]) * torch.randn(4000, 2)
    flow = RealNVP.fitted(x, layers=2, hidden=(8,), min_std=0.1)
    reference = torch.distributions.Normal(x.mean(0), x.std(0))
    assert torch.allclose(flow.log_prob(x[:50]), reference.log_prob(x[:50]).sum(1), atol=1e-4)


class MLPEnergy(Energy):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(), nn.Linear(32, 1))

    def forward(self, x, cond=None):
        return self.net(x).squeeze(-1) + x.pow(2).sum(1) / 8


def test_fce_moves_the_flow_onto_two_separated_modes():
    # data: two Gaussians at (±1.5, 0), std 0.3. The untrained flow (the fitted diagonal
    # Gaussian) puts 39 % of its mass between them (|x₁| < 0.75), the data 0.7 %; after 1,000
    # alternating steps the flow puts 4 % there (measured).
    torch.manual_seed(0)
    rng = torch.Generator().manual_seed(1)
    sign = torch.randint(0, 2, (8000,), generator=rng) * 2 - 1
    data = torch.stack([1.5 * sign, torch.zeros(8000)], 1) + 0.3 * torch.randn(8000, 2, generator=rng)
    flow = RealNVP.fitted(data, layers=6, hidden=(32, 32), min_std=0.1)
    objective = FlowContrastive(MLPEnergy(), flow, accuracy_threshold=0.6)

    def between():  # the flow's share of mass between the modes
        return (objective.sample(4000, rng=torch.Generator().manual_seed(2))[:, 0].abs() < 0.75).float().mean()

    assert between() > 0.3
    opts = {g: torch.optim.Adam(m.parameters(), lr=2e-3, betas=(0.5, 0.999))
            for g, m in objective.param_groups().items()}
    for _ in range(1000):
        batch = Batch(data[torch.randint(0, len(data), (256,), generator=rng)])
        losses, metrics = objective.loss(batch, rng=rng)
        # as the runner does: the groups given a loss, in param_groups order, each stepped at once
        groups = [g for g in objective.param_groups() if g in losses]
        for i, group in enumerate(groups):
            opts[group].zero_grad()
            torch.autograd.backward(losses[group], inputs=list(objective.param_groups()[group].parameters()),
                                    retain_graph=i < len(groups) - 1)
            opts[group].step()
    assert between() < 0.12
    # the EBM learned the modes too: lower energy at a mode than between them
    e = objective.energy(torch.tensor([[1.5, 0.0], [-1.5, 0.0], [0.0, 0.0]]))
    assert e[0] < e[2] and e[1] < e[2]
    assert {"flow/log_q_data", "nce/accuracy", "nce/log_z"} <= set(metrics)


def test_the_players_share_one_value_function_and_alternate_by_accuracy():
    def losses(threshold):
        torch.manual_seed(0)  # the same networks every time
        objective = FlowContrastive(MLPEnergy(), RealNVP((2,), layers=2, hidden=(8,)),
                                    accuracy_threshold=threshold)
        return objective.loss(Batch(torch.randn(32, 2)), rng=torch.Generator().manual_seed(0))

    both, metrics = losses(None)
    assert list(both) == ["flow", "energy"] and torch.equal(both["flow"], -both["energy"])
    accuracy = metrics["nce/accuracy"].item()
    assert list(losses(accuracy + 0.01)[0]) == ["energy"]  # the EBM is behind: it trains
    assert list(losses(accuracy)[0]) == ["flow"]


def test_flow_samples_are_revised_by_langevin_only_when_asked():
    objective = FlowContrastive(MLPEnergy(), RealNVP((2,), layers=2, hidden=(8,)))

    def rng():
        return torch.Generator().manual_seed(0)

    plain = objective.sample(100, rng=rng())
    assert torch.equal(plain, objective.flow.sample(100, rng=rng())[0])
    revised = FlowContrastive(objective.energy, objective.flow, Langevin(step_size=0.01, n_steps=5),
                              sample_steps=5).sample(100, rng=rng())
    assert not torch.equal(plain, revised)
    with pytest.raises(EbmError, match="needs a \\[sampler\\] section"):
        FlowContrastive(MLPEnergy(), RealNVP((2,)), sample_steps=3)


def test_built_from_a_recipe_section_and_bad_keys_are_named():
    ctx = BuildContext(event_shape=(1, 8, 8))
    ctx.built["data"] = build("data", "digits", batch_size=8)
    ctx.built["energy"] = ctx.build("energy", "swish_cnn", hidden=8)
    objective = ctx.build("objective", "fce", flow_layers=2, flow_hidden=[16])
    x = objective.sample(3, rng=torch.Generator())
    assert x.shape == (3, 1, 8, 8) and set(objective.param_groups()) == {"energy", "flow"}
    with pytest.raises(RecipeError, match=r"\$\.objective\.flow_hidden.*positive widths"):
        ctx.build("objective", "fce", flow_hidden=[0])
    with pytest.raises(RecipeError, match=r"\$\.objective\.accuracy_threshold.*<= 1"):
        ctx.build("objective", "fce", accuracy_threshold=1.5)
    with pytest.raises(RecipeError, match=r"\$\.objective\.flow_frozen_after.*>= 0"):
        ctx.build("objective", "fce", flow_frozen_after=-1)
    assert ctx.build("objective", "fce", flow_frozen_after=5).flow_frozen_after == 5
    with pytest.raises(RecipeError, match=r"\$\.objective\.flow_layres.*did you mean 'flow_layers'"):
        ctx.build("objective", "fce", flow_layres=2)


def test_after_flow_frozen_after_updates_only_the_energy_trains_and_the_count_is_checkpointed():
    torch.manual_seed(0)
    objective = FlowContrastive(MLPEnergy(), RealNVP((2,), layers=2, hidden=(8,)), flow_frozen_after=2)
    rng = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(32, 2))
    # unset threshold: both players for the first two updates, then the EBM alone
    assert [list(objective.loss(batch, rng=rng)[0]) for _ in range(4)] == [
        ["flow", "energy"], ["flow", "energy"], ["energy"], ["energy"]]
    # in the frozen phase no gradient reaches the flow (its samples are constants)
    losses, _ = objective.loss(batch, rng=rng)
    losses["energy"].backward()
    assert all(p.grad is None for p in objective.flow.parameters())
    # the phase is state: a resumed run stays frozen
    resumed = FlowContrastive(MLPEnergy(), RealNVP((2,), layers=2, hidden=(8,)), flow_frozen_after=2)
    resumed.load_state_dict(objective.state_dict())
    assert list(resumed.loss(batch, rng=rng)[0]) == ["energy"]
    # without the option the state is as before (older checkpoints still load)
    assert "updates" not in FlowContrastive(MLPEnergy(), RealNVP((2,))).state_dict()
