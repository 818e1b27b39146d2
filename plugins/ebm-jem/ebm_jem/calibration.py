"""Calibration of a classifier: expected calibration error and the reliability diagram."""

from pathlib import Path

import torch
from torch import Tensor

from ebmcore.kit.files import write_via


def calibration_bins(confidence: Tensor, correct: Tensor, bins: int = 15) -> tuple[Tensor, Tensor, Tensor]:
    """Per equal-width confidence bin on [0, 1]: (count, mean confidence, accuracy); empty
    bins have mean confidence and accuracy 0. A confidence of exactly 1 falls in the last
    bin, and bin b holds (b/bins, (b+1)/bins] as in Guo et al. 2017."""
    conf, right = confidence.double().flatten(), correct.double().flatten()
    idx = (torch.ceil(conf * bins).long() - 1).clamp(0, bins - 1)
    count = torch.zeros(bins, dtype=torch.double).index_add_(0, idx, torch.ones_like(conf))
    conf_sum = torch.zeros(bins, dtype=torch.double).index_add_(0, idx, conf)
    right_sum = torch.zeros(bins, dtype=torch.double).index_add_(0, idx, right)
    safe = count.clamp(min=1)
    return count, conf_sum / safe, right_sum / safe


def expected_calibration_error(confidence: Tensor, correct: Tensor, bins: int = 15) -> float:
    """Σ_b (n_b / n) · |accuracy_b − confidence_b| over equal-width confidence bins."""
    if len(confidence) == 0:
        raise ValueError("expected_calibration_error needs at least one prediction")
    count, conf, acc = calibration_bins(confidence, correct, bins)
    return float((count / count.sum() * (acc - conf).abs()).sum())


def reliability_png(confidence: Tensor, correct: Tensor, path: Path, *, bins: int = 15, title: str = "") -> None:
    """Bars of accuracy per confidence bin against the diagonal (perfect calibration),
    with the share of predictions in each bin below."""
    count, conf, acc = calibration_bins(confidence, correct, bins)
    edges = torch.linspace(0, 1, bins + 1)[:-1].numpy()
    width, shown = 1.0 / bins, count > 0
    # imported here: matplotlib takes half a second to import
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 5))
    FigureCanvasAgg(fig)  # an Agg canvas: saving needs no backend
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(edges[shown.numpy()], acc[shown].numpy(), width=width, align="edge", edgecolor="black",
            color="tab:blue", label="accuracy")
    # the gap between accuracy and mean confidence, hatched (over- or under-confidence alike)
    low, gap = torch.minimum(acc, conf)[shown].numpy(), (conf - acc).abs()[shown].numpy()
    top.bar(edges[shown.numpy()], gap, bottom=low, width=width, align="edge", fill=False, hatch="//",
            edgecolor="tab:red", linewidth=0, label="gap to mean confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    ece = expected_calibration_error(confidence, correct, bins)
    top.set_title(f"{title} ECE = {100 * ece:.2f} %".strip())
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(edges, (count / count.sum()).numpy(), width=width, align="edge", color="grey")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (max softmax)")
    bottom.set_ylabel("share")
    fig.tight_layout()
    write_via(Path(path), lambda tmp: fig.savefig(str(tmp), format="png", dpi=100))
