"""A plot drawn from a results document alone (also for `gate --results`, which has no per-token
data): ΔPPL % with its paired 95 % interval, and mean KLD, per variant and dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.report.ci import quality_rows
from evalsuite.report.plots import save_png


def write_summary_plot(doc: dict[str, Any], folder: Path) -> list[Path]:
    """`quality.png` in `folder` when the document has variant runs; returns the files written."""
    rows = [r for r in quality_rows(doc, []) if "ppl" in r]
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['variant']}\n{r['dataset']}" for r in rows]
    rel = [100 * r["rel"] for r in rows]
    err = [[100 * (r["dppl"] - lo) / r["base_ppl"] if lo is not None else 0.0 for r, (lo, _) in
            zip(rows, (r["ci"] for r in rows), strict=True)],
           [100 * (hi - r["dppl"]) / r["base_ppl"] if hi is not None else 0.0 for r, (_, hi) in
            zip(rows, (r["ci"] for r in rows), strict=True)]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8.0, 1.4 * len(rows)), 4), dpi=110)
    ax1.bar(labels, rel, yerr=err, capsize=3)
    ax1.set(title="ΔPPL vs base (%, paired 95% CI)", ylabel="%")
    ax2.bar(labels, [r["kld"] or 0.0 for r in rows])
    ax2.set(title="KLD mean (nats)")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return [save_png(fig, folder / "quality.png")]
