"""Plots (ROC, DET, score histograms, CMC, training curves) and a Markdown report of an evaluated run."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm

from biohash import metrics
from biohash.types import Scores

TABLE_COLUMNS = (("eer", "EER %", 100), ("tar@far=0.001", "TAR@FAR=1e-3 %", 100), ("rank1", "rank-1 %", 100),
                 ("map", "mAP %", 100), ("d_prime", "d'", 1))


def _save(fig, ax, path: Path) -> None:
    """Grid, legend, layout, write and close: the common end of every line plot."""
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc(scores: dict[str, Scores], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    for mode, s in scores.items():
        far, tar, _ = metrics.roc(s.genuine, s.impostor)
        ax.plot(np.maximum(far, 1e-6), tar, label=mode)
    ax.set(xscale="log", xlim=(1e-5, 1), ylim=(0, 1.01), xlabel="FAR", ylabel="TAR", title="ROC")
    _save(fig, ax, path)


def plot_det(scores: dict[str, Scores], path: Path) -> None:
    """DET on normal-deviate axes, the usual biometric convention."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ticks = np.array([1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5])
    def clip(v):
        return norm.ppf(np.clip(v, 1e-5, 1 - 1e-5))
    for mode, s in scores.items():
        far, frr = metrics.det(s.genuine, s.impostor)
        ax.plot(clip(far), clip(frr), label=mode)
    ax.set_xticks(norm.ppf(ticks), [f"{t:g}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{t:g}" for t in ticks])
    ax.set(xlim=norm.ppf([1e-5, 0.6]), ylim=norm.ppf([1e-5, 0.6]), xlabel="FAR", ylabel="FRR", title="DET")
    _save(fig, ax, path)


def plot_histograms(scores: dict[str, Scores], path: Path) -> None:
    fig, axes = plt.subplots(1, len(scores), figsize=(3.2 * len(scores), 3), squeeze=False)
    bins = np.linspace(0, 1, 65)
    for ax, (mode, s) in zip(axes[0], scores.items()):
        ax.hist(s.impostor, bins, density=True, alpha=0.6, label="impostor", color="tab:red")
        ax.hist(s.genuine, bins, density=True, alpha=0.6, label="genuine", color="tab:green")
        ax.set(title=mode, xlabel="similarity (1 - Hamming/bits)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cmc(scores: dict[str, Scores], path: Path, max_rank: int = 10) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    for mode, s in scores.items():
        keep = s.genuine_mask.any(axis=1)
        curve = metrics.cmc(s.matrix[keep], s.probe_ids[keep], s.gallery_ids, max_rank)
        ax.plot(np.arange(1, max_rank + 1), curve, marker="o", label=mode)
    ax.set(xlabel="rank", ylabel="identification rate", title="CMC", ylim=(0, 1.01))
    _save(fig, ax, path)


def plot_history(history: list[dict], path: Path) -> None:
    if not history:
        return
    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["loss"] for r in history], label="train loss")
    ax.set(xlabel="epoch", ylabel="loss")
    val = [(r["epoch"], r["val_eer"]) for r in history if "val_eer" in r]
    if val:
        ax2 = ax.twinx()
        ax2.plot(*zip(*val), color="tab:orange", label="val EER")
        ax2.set(ylabel="validation EER")
        ax2.legend(loc="upper center")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_rows(per_mode: dict[str, dict[str, float]]) -> list[list[str]]:
    return [[mode] + [f"{m[key] * scale:.2f}" for key, _, scale in TABLE_COLUMNS] for mode, m in per_mode.items()]


def markdown_table(per_mode: dict[str, dict[str, float]]) -> str:
    head = "| mode | " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |"
    sep = "|" + "---|" * (len(TABLE_COLUMNS) + 1)
    return "\n".join([head, sep] + ["| " + " | ".join(r) + " |" for r in table_rows(per_mode)])


def write_report(out_dir: Path, title: str, scores: dict[str, Scores], per_mode: dict[str, dict[str, float]],
                 context: dict[str, object], history: list[dict] | None = None) -> Path:
    """Plots plus report.md in `out_dir`; returns the report path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_roc(scores, out_dir / "roc.png")
    plot_det(scores, out_dir / "det.png")
    plot_histograms(scores, out_dir / "histograms.png")
    plot_cmc(scores, out_dir / "cmc.png")
    images = ["roc.png", "det.png", "histograms.png", "cmc.png"]
    if history:
        plot_history(history, out_dir / "training.png")
        images.append("training.png")
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in context.items()]
    lines += ["", markdown_table(per_mode), "",
              "Scores are similarities (1 - Hamming distance / bits); modes: print-print, vein-vein, fused "
              "(mean of print and vein similarity), cross (print probes vs vein gallery), cross-rev "
              "(vein probes vs print gallery).", ""]
    lines += [f"![{name}]({name})" for name in images]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
