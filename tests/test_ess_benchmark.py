"""benchmarks/ess_per_gradient.py: a --quick smoke run, and one comparison that could fail."""

import importlib.util
import json
import math
import subprocess
import sys

import pytest
from support import ROOT

SCRIPT = ROOT / "benchmarks" / "ess_per_gradient.py"
SAMPLERS = ["ULA", "ULA at MALA's step", "MALA", "HMC 5 leapfrog", "HMC 5 leapfrog, adapted",
            "HMC 5 leapfrog, window-adapted, jittered", "NUTS, step adapted", "NUTS, window-adapted",
            "PT, MALA × 4", "PT, HMC × 4"]
EBMKIT = ["ebmkit NUTS", "ebmkit PT, MALA × 4", "ebmkit PT, HMC × 4"]


def _load():
    spec = importlib.util.spec_from_file_location("ess_per_gradient", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_prints_a_row_per_sampler_with_finite_ess_per_gradient(tmp_path):
    out = tmp_path / "ess.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--targets", "gaussian_10d", "--markdown",
                        "--json", str(out), "--threads", "1"],
                       check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    libs = ["", "ebmkit "] if _load().ebmkit() else [""]
    expected = SAMPLERS + (EBMKIT if len(libs) == 2 else [])
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and not line.startswith("| sampler")]
    assert [row.split("|")[1].strip() for row in rows] == expected, r.stdout
    for row in rows:
        min_ess, mean_ess = (float(c.strip().rstrip("†").strip()) for c in row.split("|")[4:6])
        assert 0 < min_ess <= mean_ess < math.inf, row
    data = {d["sampler"]: d for d in json.loads(out.read_text())["rows"]}
    assert list(data) == expected
    for d in data.values():
        assert all(math.isfinite(d[k]) for k in ("min_ess_per_grad", "min_ess_sq_per_grad", "cov_error",
                                                 "seconds", "ms_per_ess")), d
    # the counted gradients are the documented costs: HMC 5 per transition; tempering per
    # replica the kernel's, one to re-initialise it (ebm) or to recompute ∇E at the start
    # (ebmkit), and a third for the swap energy
    for name in ("HMC 5 leapfrog", "HMC 5 leapfrog, window-adapted, jittered"):
        assert data[name]["grads_per_transition"] == 5
    for lib in libs:
        assert data[f"{lib}PT, MALA × 4"]["grads_per_transition"] == pytest.approx(4 * (2 + 1 / 3))
        assert data[f"{lib}PT, HMC × 4"]["grads_per_transition"] == pytest.approx(4 * (6 + 1 / 3))
        assert all(0 < rate < 1 for rate in data[f"{lib}PT, MALA × 4"]["swap_rates"])
    # NUTS: a chain's own gradients are at most what the lockstep batch evaluates for it
    nuts = data["NUTS, step adapted"]
    assert 1 <= nuts["own_grads_per_transition"] <= nuts["grads_per_transition"] < 2 ** 10
    assert nuts["min_ess_per_own_grad"] >= nuts["min_ess_per_grad"]


def test_ebmkit_rows_are_skipped_when_ebmkit_is_not_importable(monkeypatch, one_thread, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ebm", None)  # `import ebm` raises ImportError
    bench = _load()
    assert bench.ebmkit() is None
    out = tmp_path / "ess.json"
    bench.main(["--quick", "--chains", "8", "--targets", "gaussian_2d", "--samplers", "nuts,ebmkit-nuts",
                "--json", str(out)])
    assert "ebmkit is not installed" in capsys.readouterr().out
    assert [d["sampler"] for d in json.loads(out.read_text())["rows"]] == ["NUTS, step adapted"]


def test_mala_is_unbiased_where_ula_at_a_large_step_is_not_on_the_10d_gaussian(one_thread):
    # ULA's variance along a precision eigenvalue λ is 1/(1 − sλ/2) too large: at s = 0.2 and
    # λ = 4 that is 67 %; MALA at the benchmark's step has no bias, only sampling error
    # (≈ 2·sqrt(10/ESS), ESS in the thousands here)
    bench = _load()
    t = bench.targets()["gaussian_10d"]
    mala = bench.measure(t, bench.Row("MALA", bench.MALA(step_size=t.mala_step), 300), chains=100)
    ula = bench.measure(t, bench.Row("ULA", bench.Langevin(step_size=0.2), 300), chains=100)
    assert mala["cov_error"] < 0.2 and ula["cov_error"] > 0.4, (mala["cov_error"], ula["cov_error"])
    assert 0.4 < mala["acceptance"] < 0.9
