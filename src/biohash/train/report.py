"""Plots (ROC, DET, score histograms, CMC, training curves) and a Markdown report of an evaluated run."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from scipy.stats import norm

from biohash.match import metrics
from biohash.match.types import Scores

TABLE_COLUMNS = (("eer", "EER %", 100), ("tar@far=0.001", "TAR@FAR=1e-3 %", 100), ("rank1", "rank-1 %", 100),
                 ("map", "mAP %", 100), ("d_prime", "d'", 1))


_MARKERS = "osD^v<>ph*"
_LINES = ("-", "--", "-.", ":")


def _style(k: int, points: int = 0) -> dict:
    """One colour, marker and dash per curve, the same in every plot: curves stay apart in grey print too
    (about ten markers a curve of `points` points)."""
    return {"color": f"C{k % 10}", "marker": _MARKERS[k % len(_MARKERS)], "linestyle": _LINES[k % len(_LINES)],
            "markersize": 4, "markevery": max(1, points // 10)}


def _save(fig, path: Path) -> None:
    """Write PNG and the same figure as SVG beside it (vector, for papers). Figures are drawn without pyplot,
    so plotting neither picks nor changes the caller's matplotlib backend."""
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays text: editable and searchable in a paper
        fig.savefig(path.with_suffix(".svg"))


def _label(mode: str, s: Scores) -> str:
    return f"{mode} (EER {100 * metrics.eer(s.genuine, s.impostor).rate:.2f} %)"


def plot_roc(scores: dict[str, Scores], path: Path, title: str = "ROC") -> None:
    """ROC on a log FAR axis, drawn only where FAR is measurable (at least one impostor accepted: FAR >= 1 /
    impostor comparisons); the lowest measurable FAR is marked."""
    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    floor = 1.0
    for k, (mode, s) in enumerate(scores.items()):
        far, tar, _ = metrics.roc(s.genuine, s.impostor)
        ok = far >= 1 / len(s.impostor)
        floor = min(floor, 1 / len(s.impostor))
        ax.plot(far[ok], tar[ok], label=_label(mode, s), **_style(k, int(ok.sum())))
    ax.axvline(floor, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xlim=(floor / 1.5, 1), ylim=(None, 1.005), xlabel="false accept rate (FAR)",
           ylabel="true accept rate (TAR)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def _deviate_axis(ax, which: str, floor: float) -> tuple[float, float]:
    """Normal-deviate ticks (in %) from the measurable floor to 50 %; returns the axis limits."""
    ticks = np.array([t for t in (1e-5, 1e-4, 1e-3, 1e-2, 0.02, 0.05, 0.1, 0.2, 0.4) if t >= floor / 1.01])
    limits = (float(norm.ppf(floor / 1.5)), float(norm.ppf(0.5)))
    getattr(ax, f"set_{which}ticks")(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    getattr(ax, f"set_{which}lim")(limits)
    return limits


def plot_det(scores: dict[str, Scores], path: Path, title: str = "DET") -> tuple[float, float]:
    """DET on normal-deviate axes (ISO/IEC 19795-1), each axis limited to its measurable range (a rate of at
    least one error: 1 / impostor comparisons for FMR, 1 / genuine comparisons for FNMR); each curve's EER
    marked and given in its label. Returns the (FMR, FNMR) floors."""
    fig = Figure(figsize=(5.5, 4.6))
    ax = fig.subplots()
    far_floor = min(1 / len(s.impostor) for s in scores.values())
    frr_floor = min(1 / len(s.genuine) for s in scores.values())
    for k, (mode, s) in enumerate(scores.items()):
        far, frr = metrics.det(s.genuine, s.impostor)
        ok = (far >= 1 / len(s.impostor)) & (frr >= 1 / len(s.genuine))
        style = _style(k, int(ok.sum()))
        e = metrics.eer(s.genuine, s.impostor).rate  # once: the label and the marker
        ax.plot(norm.ppf(far[ok]), norm.ppf(frr[ok]), label=f"{mode} (EER {100 * e:.2f} %)", **style)
        if e > 0:
            ax.plot(norm.ppf(e), norm.ppf(e), marker="o", mfc="none", ms=9, color=style["color"], ls="none")
    xlim, ylim = _deviate_axis(ax, "x", far_floor), _deviate_axis(ax, "y", frr_floor)
    diagonal = (max(xlim[0], ylim[0]), 0.0)
    ax.plot(diagonal, diagonal, color="grey", lw=0.6, ls=":")
    ax.set(xlabel="false match rate (%)", ylabel="false non-match rate (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
    _save(fig, path)
    return far_floor, frr_floor


def plot_histograms(scores: dict[str, Scores], path: Path, title: str = "") -> None:
    """Genuine and impostor similarity per mode, the EER threshold of these scores drawn."""
    fig = Figure(figsize=(3.2 * len(scores), 3.2))
    axes = fig.subplots(1, len(scores), squeeze=False)
    bins = np.linspace(0, 1, 65)
    for ax, (mode, s) in zip(axes[0], scores.items()):
        ax.hist(s.impostor, bins, density=True, alpha=0.6, label="impostor", color="tab:red")
        ax.hist(s.genuine, bins, density=True, alpha=0.6, label="genuine", color="tab:green")
        e = metrics.eer(s.genuine, s.impostor)
        ax.axvline(e.threshold, color="black", lw=1, ls="--", label=f"EER threshold {e.threshold:.3f}")
        ax.set(title=f"{mode}: EER {100 * e.rate:.2f} %", xlabel="similarity (1 - Hamming / bits)")
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def plot_cmc(scores: dict[str, Scores], path: Path, max_rank: int = 10, title: str = "CMC") -> None:
    """CMC with markers; the y-range starts just under the lowest curve so curves near 1 stay apart."""
    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    low = 1.0
    for k, (mode, s) in enumerate(scores.items()):
        keep = s.genuine_mask.any(axis=1)
        curve = metrics.cmc(s.matrix[keep], s.probe_ids[keep], s.gallery_ids, max_rank)
        low = min(low, float(curve.min()))
        ax.plot(np.arange(1, max_rank + 1), curve, label=f"{mode} (rank-1 {100 * curve[0]:.1f} %)",
                **_style(k))
    pad = max(0.005, (1 - low) * 0.1)
    ax.set(xlabel="rank", ylabel="identification rate", title=title, ylim=(max(0.0, low - pad), 1 + pad / 2),
           xticks=np.arange(1, max_rank + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def plot_history(history: list[dict], path: Path) -> None:
    if not history:
        return
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
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
    _save(fig, path)


def table_rows(per_mode: dict[str, dict[str, float]]) -> list[list[str]]:
    return [[mode] + [f"{m[key] * scale:.2f}" for key, _, scale in TABLE_COLUMNS] for mode, m in per_mode.items()]


def markdown_table(per_mode: dict[str, dict[str, float]]) -> str:
    head = "| mode | " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |"
    sep = "|" + "---|" * (len(TABLE_COLUMNS) + 1)
    return "\n".join([head, sep] + ["| " + " | ".join(r) + " |" for r in table_rows(per_mode)])


def write_report(out_dir: Path, title: str, scores: dict[str, Scores], per_mode: dict[str, dict[str, float]],
                 context: dict[str, object], *, history: list[dict] | None = None) -> Path:
    """Plots plus report.md in `out_dir`; returns the report path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    about = _about(context)
    plot_roc(scores, out_dir / "roc.png", f"ROC: {about}")
    plot_det(scores, out_dir / "det.png", f"DET: {about}")
    plot_histograms(scores, out_dir / "histograms.png", about)
    plot_cmc(scores, out_dir / "cmc.png", title=f"CMC: {about}")
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
    write_html(out_dir / "report.html", title, context, per_mode, [out_dir / name for name in images])
    return path


def _about(context: dict[str, object]) -> str:
    """What a plot's title says: run, code length, protocol."""
    bits = context.get("bits")
    parts = [str(context.get("run", "")), f"{bits} bits" if isinstance(bits, int) else str(bits or ""),
             str(context.get("protocol", ""))]
    return ", ".join(p for p in parts if p)


def write_html(path: Path, title: str, context: dict[str, object], per_mode: dict[str, dict[str, float]],
               images: list[Path]) -> None:
    """One self-contained page (images embedded, no network): the context, the metrics table and the plots."""
    import base64
    from html import escape

    head = "".join(f"<th>{escape(t)}</th>" for t in ["mode"] + [title for _, title, _ in TABLE_COLUMNS])
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in table_rows(per_mode))
    facts = "".join(f"<li><b>{escape(str(k))}</b>: {escape(str(v))}</li>" for k, v in context.items())
    figures = "".join(f"<figure><img alt='{escape(p.stem)}' src='data:image/png;base64,"
                      f"{base64.b64encode(p.read_bytes()).decode()}'><figcaption>{escape(p.stem)} (vector: "
                      f"{escape(p.with_suffix('.svg').name)})</figcaption></figure>" for p in images if p.is_file())
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>"
                    "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
                    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}figure{display:inline-block;"
                    "margin:.5em}img{max-width:520px}</style></head><body>"
                    f"<h1>{escape(title)}</h1><ul>{facts}</ul><table><tr>{head}</tr>{rows}</table>{figures}"
                    "</body></html>")
