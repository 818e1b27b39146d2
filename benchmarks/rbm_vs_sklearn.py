"""scikit-learn's ``BernoulliRBM`` against ebm's ``rbm`` on the same binarised digits, in one
process: held-out log-likelihood by AIS, pseudo-log-likelihood, training time.

    python benchmarks/rbm_vs_sklearn.py [--hidden 64] [--lr 0.05] [--epochs 20] [--betas 14500]
                                        [--chains 100] [--threads 1] [--json PATH]

Both learn the way scikit-learn does: PCD-1 (persistent chains, one Gibbs sweep per update),
batches of 100, plain SGD at ``lr`` (no momentum, no weight decay), W ~ N(0, 0.01²), zero
biases, 15 updates per epoch (scikit-learn splits the 1,437 training digits into 15 even
batches; ebm draws 15 batches of 100 per epoch's worth of steps). ebm trains through its
runner (objective ``mle``, sampler ``gibbs``, generator ``replay_buffer`` of 100 chains
never restarted and drawn without replacement: a fixed set of persistent chains); its time is the run's training time (``time/elapsed_s``), without data loading
or evaluation. Data: the ebm-image digits split (360 held out by seed 0), thresholded at
mid-grey. Both models are then scored by ebm: log Z by AIS from the base-rate model of the
training set (scikit-learn's weights loaded into an ebm RBM), the pseudo-log-likelihood with
the same flipped units (scikit-learn's own ``score_samples`` agrees with it: tested in
plugins/ebm-rbm).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ebm_image import DigitsConfig, DigitsData
from ebm_rbm import BernoulliRBM, ais_log_partition, pseudo_log_likelihood, rbm_betas
from safetensors.torch import load_file
from sklearn.neural_network import BernoulliRBM as SkBernoulliRBM

from ebmcore.train import run_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "digits-rbm.toml"


def score(rbm: BernoulliRBM, train: torch.Tensor, heldout: torch.Tensor, flips: torch.Tensor,
          *, chains: int, betas: int) -> dict[str, float]:
    est = ais_log_partition(rbm, rbm.visible_fit(train), chains=chains, betas=rbm_betas(betas),
                            rng=torch.Generator().manual_seed(0))
    with torch.no_grad():
        nats = float((-rbm(heldout).double() - est.log_z).mean())
    return {"nats": nats, "log_z": est.log_z, "log_z_se": est.std_error, "ess": est.ess,
            "pll": float(pseudo_log_likelihood(rbm, heldout, index=flips).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--betas", type=int, default=14500)
    ap.add_argument("--chains", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = DigitsData.from_config(DigitsConfig(binarize="threshold"))
    train, heldout = data.dataset().x.flatten(1), data.heldout().x.flatten(1)
    flips = torch.randint(0, train.shape[1], (len(heldout),), generator=torch.Generator().manual_seed(1))

    sk = SkBernoulliRBM(n_components=a.hidden, learning_rate=a.lr, batch_size=100, n_iter=a.epochs, random_state=0)
    t = time.perf_counter()
    sk.fit(train.double().numpy())
    sk_seconds = time.perf_counter() - t
    theirs = BernoulliRBM(train.shape[1], a.hidden)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(sk.components_.T))
        theirs.visible_bias.copy_(torch.from_numpy(sk.intercept_visible_))
        theirs.hidden_bias.copy_(torch.from_numpy(sk.intercept_hidden_))

    updates = a.epochs * int(np.ceil(len(train) / 100))
    with tempfile.TemporaryDirectory() as out:
        record = run_recipe(RECIPE, out=out, progress=False, overrides=[
            f"run.steps={updates}", f"run.eval_every={updates + 1}", f"run.sample_every={updates + 1}",
            f"run.checkpoint_every={updates + 1}", "run.eval_samples=16", "objective.sample_steps=1",
            f"energy.hidden={a.hidden}", "energy.data_bias=false", "sampler.probabilities=false",
            f"optim.energy.lr={a.lr}", "optim.energy.momentum=0.0", "optim.energy.weight_decay=0.0",
            "generator.type=replay_buffer", "generator.size=100", "generator.reinit=0.0",
            "generator.replacement=false",
            "tasks.loglik.betas=3", "tasks.loglik.chains=2"])  # the run's own loglik is not what is compared
        ours = BernoulliRBM(train.shape[1], a.hidden)
        weights = load_file(next(Path(out).glob("checkpoints/*.safetensors")))  # the last step's only
        ours.load_state_dict({k.removeprefix("model/energy."): v for k, v in weights.items()
                              if k.startswith("model/energy.")})
    ebm_seconds = record["time/elapsed_s"]

    results = {"sklearn": {**score(theirs, train, heldout, flips, chains=a.chains, betas=a.betas),
                           "train_s": sk_seconds},
               "ebm": {**score(ours, train, heldout, flips, chains=a.chains, betas=a.betas), "train_s": ebm_seconds},
               "settings": vars(a) | {"json": None, "updates": updates}}
    for name in ("sklearn", "ebm"):
        r = results[name]
        print(f"{name:8s} held-out {r['nats']:8.3f} nats/digit (log Z {r['log_z']:.3f} ± {r['log_z_se']:.3f}, "
              f"ESS {r['ess']:.0f}), PLL {r['pll']:8.3f}, training {r['train_s']:.2f} s")
    print(f"ebm / sklearn training time: {ebm_seconds / sk_seconds:.2f}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
