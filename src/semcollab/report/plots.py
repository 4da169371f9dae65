"""Small matplotlib charts for ``semcollab report``, returned as base64 PNG (Agg backend: no display needed)."""

from __future__ import annotations

import base64
import io

import numpy as np

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


def _text(s: str, width: int = 38) -> str:
    """A label as matplotlib should print it: ``$`` would start mathtext (and a stray one fails to parse)."""
    s = str(s).replace("$", r"\$")
    return s if len(s) <= width else s[:width - 1] + "…"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_chart(lines: dict[str, list[tuple[float, float]]], ylabel: str) -> str:
    """One line per run: (epoch, value) points. Seeds of one setting share a colour."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    colour_of: dict[str, str] = {}
    for name, pts in lines.items():
        setting = name.rsplit(" seed ", 1)[0]
        c = colour_of.setdefault(setting, COLOURS[len(colour_of) % len(COLOURS)])
        x, y = zip(*pts)
        ax.plot(x, y, marker="o", ms=3, lw=1.5, color=c, label=_text(name, 48))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(_text(ylabel.replace("_", " ")))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def bar_chart(groups: list[str], series: dict[str, list[tuple[float, float]]], ylabel: str) -> str:
    """Grouped bars: one cluster per setting, one bar per series (mean, with the sd over seeds as error bar)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    x = np.arange(len(groups))
    w = 0.8 / max(len(series), 1)
    for i, (name, vals) in enumerate(series.items()):
        mean = [m for m, _ in vals]
        sd = [s for _, s in vals]
        ax.bar(x + (i - (len(series) - 1) / 2) * w, mean, w, yerr=sd if any(sd) else None, capsize=3,
               label=_text(name), color=COLOURS[i % len(COLOURS)])
    ax.set_xticks(x, [_text(g, 24) for g in groups], rotation=15 if len(groups) > 2 else 0, ha="right"
                  if len(groups) > 2 else "center", fontsize=8)
    ax.set_ylabel(_text(ylabel))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(series), 3))
    return _png(fig)
