import pytest
import torch
from ebm_langevin import MALA, Langevin
from ebm_mle import UniformNoise
from ebm_multiscale import CoarseToFine, Multigrid, MultiScaleEnergy, MultiScaleMLE
from ebm_multiscale.energies import PyramidEnergy, resize

import ebmcore
from ebmcore import Batch


class _CountingPyramid(PyramidEnergy):
    """A multi-scale quadratic energy that counts evaluations per resolution."""

    def __init__(self, resolutions):
        super().__init__()
        self.resolutions = tuple(resolutions)
        self.w = torch.nn.Parameter(torch.ones(()))
        self.calls = {r: 0 for r in resolutions}

    def forward(self, x, cond=None):
        self.calls[x.shape[-1]] += 1
        return 0.5 * self.w * x.flatten(1).pow(2).sum(1)


@pytest.mark.parametrize("cls,resolutions", [(Multigrid, (1, 4, 16)), (CoarseToFine, (4, 8, 16))])
def test_pyramid_samplers_give_correctly_shaped_samples_at_every_scale(cls, resolutions):
    energy = MultiScaleEnergy(3, resolutions, width=8)
    sampler = cls(Langevin(step_size=0.01, n_steps=4))
    x0 = torch.rand(5, 3, 16, 16)
    out = sampler.run_pyramid(x0, energy, rng=torch.Generator().manual_seed(0))
    assert [tuple(x.shape) for x in out] == [(5, 3, r, r) for r in resolutions]
    assert all(torch.isfinite(x).all() and not x.requires_grad for x in out)
    assert torch.equal(sampler.run(x0, energy, rng=torch.Generator().manual_seed(0)), out[-1])


def test_multigrid_runs_k_steps_per_grid_starting_from_the_coarser_grid():
    energy = _CountingPyramid((1, 4, 16))
    Multigrid(Langevin(step_size=0.01, n_steps=6)).run(torch.zeros(2, 1, 16, 16), energy, rng=torch.Generator())
    assert energy.calls == {1: 6, 4: 6, 16: 6}


def test_coarse_to_fine_fades_in_each_stage_through_the_coarser_energy():
    energy = _CountingPyramid((4, 8, 16))
    CoarseToFine(Langevin(step_size=0.01, n_steps=6), fade_steps=2).run(
        torch.zeros(2, 1, 16, 16), energy, rng=torch.Generator())
    # stage 8 and stage 16 each spend 2 faded steps that also evaluate the coarser energy
    assert energy.calls == {4: 6 + 2, 8: 6 + 2, 16: 6}


def test_masked_pixels_keep_the_observed_image_at_the_finest_scale():
    energy = MultiScaleEnergy(1, (4, 16), width=8)
    x0 = torch.rand(3, 1, 16, 16)
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    mask[..., :8] = True
    x = Multigrid(Langevin(step_size=0.01, n_steps=5)).run(x0, energy, rng=torch.Generator(), mask=mask)
    assert torch.equal(x[..., :8], x0[..., :8]) and not torch.equal(x[..., 8:], x0[..., 8:])


def test_the_per_grid_kernel_comes_from_the_registry():
    sampler = ebmcore.build("sampler", "multigrid", kernel="mala", step_size=0.05, n_steps=3)
    assert isinstance(sampler.kernel, MALA) and sampler.kernel.config.step_size == 0.05
    assert sampler.n_steps == sampler.kernel.n_steps == 3
    with pytest.raises(ebmcore.PluginError, match="unknown sampler 'langevn'"):
        ebmcore.build("sampler", "multigrid", kernel="langevn")
    with pytest.raises(ebmcore.EbmError, match="noise"):
        ebmcore.build("sampler", "coarse_to_fine", kernel="hmc", noise=0.1)


def test_kernel_options_reach_the_kernel_and_are_validated_by_it():
    sampler = ebmcore.build("sampler", "multigrid", kernel="hmc", kernel_options={"n_leapfrog": 3})
    assert sampler.kernel.config.n_leapfrog == 3
    with pytest.raises(ebmcore.RecipeError, match=r"\$\.sampler\.kernel_options.*n_leapfrog.*must be > 0"):
        ebmcore.build("sampler", "multigrid", kernel="hmc", kernel_options={"n_leapfrog": 0})
    with pytest.raises(ebmcore.RecipeError, match="n_lepfrog.*did you mean 'n_leapfrog'"):
        ebmcore.build("sampler", "multigrid", kernel="hmc", kernel_options={"n_lepfrog": 3})


def test_multiscale_energy_picks_the_energy_of_the_input_resolution():
    energy = MultiScaleEnergy(1, (1, 4), width=8)
    assert energy(torch.rand(2, 1, 1, 1)).shape == (2,) and energy(torch.rand(2, 1, 4, 4)).shape == (2,)
    with pytest.raises(KeyError):
        energy(torch.rand(2, 1, 8, 8))
    assert resize(torch.ones(1, 1, 4, 4), 1).item() == 1.0


def test_multiscale_mle_has_one_loss_and_one_group_per_scale_and_learns_only_its_scale():
    torch.manual_seed(0)
    energy = MultiScaleEnergy(1, (1, 4, 16), width=8)
    obj = MultiScaleMLE(energy, Multigrid(Langevin(step_size=0.01, n_steps=3)), UniformNoise((1, 16, 16)))
    assert set(obj.param_groups()) == {"scale1", "scale4", "scale16"}
    losses, metrics = obj.loss(Batch(torch.rand(4, 1, 16, 16)), rng=torch.Generator())
    assert set(losses) == {"scale1", "scale4", "scale16"} and "energy/sample@16" in metrics
    losses["scale4"].backward()
    grads = {name: any(p.grad is not None for p in m.parameters()) for name, m in obj.param_groups().items()}
    assert grads == {"scale1": False, "scale4": True, "scale16": False}


def test_upsample_noise_makes_noise_free_chains_from_one_start_differ():
    energy = MultiScaleEnergy(1, (1, 4, 16), width=8, head="sum")
    x0 = torch.zeros(4, 1, 16, 16)
    plain = Multigrid(Langevin(step_size=0.1, n_steps=3, noise=0.0))
    out = plain.run(x0, energy, rng=torch.Generator().manual_seed(0))
    assert torch.allclose(out, out[:1].expand_as(out))  # one start, no noise: one sample
    noisy = ebmcore.build("sampler", "multigrid", step_size=0.1, n_steps=3, noise=0.0, upsample_noise=0.2)
    out = noisy.run(x0, energy, rng=torch.Generator().manual_seed(0))
    assert (out[0] - out[1]).abs().mean() > 0.05


def test_sum_head_is_stationary_and_works_at_every_grid_of_a_64_pyramid():
    energy = MultiScaleEnergy(1, (1, 4, 16, 64), width=8, head="sum")
    for r in (1, 4, 16, 64):
        x = torch.rand(2, 1, r, r, requires_grad=True)
        e = energy(x)
        (g,) = torch.autograd.grad(e.sum(), x)
        assert e.shape == (2,) and torch.isfinite(g).all()
    # a sum of local potentials: a shift by the total stride (8) keeps the interior's contribution
    x = torch.rand(1, 1, 64, 64)
    big = torch.zeros(1, 1, 64, 64)
    big[..., 16:48, 16:48] = x[..., :32, :32]
    shifted = torch.roll(big, shifts=(8, 8), dims=(-2, -1))
    assert torch.allclose(energy(big), energy(shifted), atol=1e-4)


def test_fresh_chains_start_from_the_training_images_at_the_coarsest_grid():
    torch.manual_seed(0)
    data = torch.rand(10, 1, 16, 16) * 2 - 1
    energy = MultiScaleEnergy(1, (1, 4, 16), width=8)
    obj = MultiScaleMLE(energy, Multigrid(Langevin(step_size=0.01, n_steps=2)), UniformNoise((1, 16, 16)),
                        coarse_data=data)
    starts = obj.fresh(6, rng=torch.Generator().manual_seed(0))
    means = starts.mean(dim=(1, 2, 3))
    data_means = data.mean(dim=(1, 2, 3))
    assert all(torch.isclose(m, data_means, atol=1e-5).any() for m in means) and means.std() > 0.02
    assert "coarse_data" in obj.state_dict()  # checkpoints carry it
    # built from a recipe with fresh_start = "data", the training set is stored pooled
    ctx = ebmcore.BuildContext(event_shape=(1, 16, 16))
    ctx.built.update({"data": type("D", (), {"dataset": lambda self: Batch(data)})(),
                      "energy": energy, "sampler": Multigrid(Langevin()), "generator": UniformNoise((1, 16, 16))})
    built = ctx.build("objective", "mle_multiscale", fresh_start="data")
    assert built.coarse_data.shape == (10, 1, 1, 1)


def test_a_pyramid_refuses_tracing_and_annealing_instead_of_dropping_them():
    energy = MultiScaleEnergy(1, (4, 16), width=8)
    sampler = Multigrid(Langevin(step_size=0.01, n_steps=2))
    for extra in ({"trace": True}, {"temperatures": [1.0, 1.0]}):
        with pytest.raises(ValueError, match="trace and temperatures are not supported"):
            sampler.run(torch.zeros(2, 1, 16, 16), energy, rng=torch.Generator(), **extra)
