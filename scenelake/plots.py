"""Charts of slice comparisons: drawn on any matplotlib axes (notebooks), or written as PNG with the Agg canvas.

The file charts build their Figure directly with an Agg canvas instead of going through pyplot,
so they need no display, and importing this module leaves a notebook's backend alone.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scenelake.comparison import slice_label

COLORS = {"regression": "#c0392b", "improvement": "#1e8449", "none": "#7f8c8d"}
LABELS = {"regression": "regression (flagged)", "improvement": "improvement (flagged)", "none": "not flagged"}


def chart_rows(table: pd.DataFrame, metric: str, limit: int = 30) -> pd.DataFrame:
    """The slices worth drawing: every flagged one, then tested ones by |delta| / std_error, at most `limit`."""
    rows = table[(table["metric"] == metric) & table["same_as"].isna() & table["delta"].notna()]
    strength = (rows["delta"].abs() / rows["std_error"].where(rows["std_error"] > 0)).fillna(0.0)
    rows = rows.assign(_flagged=rows["flag"] != "none", _tested=rows["tested"].astype(bool), _strength=strength)
    picked = rows.sort_values(["_flagged", "_tested", "_strength"], ascending=False).head(limit)
    return picked.sort_values("delta", ascending=False).drop(columns=["_flagged", "_tested", "_strength"])


def draw_deltas(ax: Axes, rows: pd.DataFrame, metric: str) -> None:
    """Horizontal delta per slice (rows from `chart_rows`) with its 95% interval, coloured by flag, zero marked."""
    positions = list(range(len(rows)))
    for flag, color in COLORS.items():
        mask = (rows["flag"] == flag).to_numpy()
        if not mask.any():
            continue
        part = rows[mask]
        low = (part["delta"] - part["delta_low"]).clip(lower=0).fillna(0).to_numpy(float)
        high = (part["delta_high"] - part["delta"]).clip(lower=0).fillna(0).to_numpy(float)
        ax.errorbar(part["delta"].to_numpy(float), [p for p, m in zip(positions, mask, strict=True) if m],
                    xerr=[low, high], fmt="o", color=color, ecolor=color, capsize=3, label=LABELS[flag])
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(positions)
    ax.set_yticklabels([f"{slice_label(r.slice_by, r.slice_value)}  ({r.num_captures} captures)"
                        for r in rows.itertuples()], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric}: candidate - baseline (95% capture-bootstrap interval)")
    ax.grid(axis="x", alpha=0.3)
    if len(rows):
        ax.legend(loc="lower right", fontsize=8)


def delta_chart(table: pd.DataFrame, path: Path | str, title: str, metric: str = "ap", limit: int = 30) -> Path:
    """The slice delta chart of one comparison (gold.slice_comparisons rows) as a PNG; returns the path."""
    rows = chart_rows(table, metric, limit)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(9, 1.4 + 0.28 * max(len(rows), 1)))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    draw_deltas(ax, rows, metric)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
