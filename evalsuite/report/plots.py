"""PNG plots for people who would rather look than read (matplotlib, headless Agg backend).

- `dnll_<dataset>.png`: per-window mean NLL of each variant minus the base's, along the text.
- `kld_<dataset>.png`: the distribution of per-token KL(base || variant), log-scaled, per variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.scoring.tokenstats import PAIRED


def write_plots(ev: Any, folder: Path) -> list[Path]:
    """Plots for every dataset that has a paired variant; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    written, roles = [], ev.suite.roles
    for ds in sorted({key[2] for key in ev.cols}):
        base = ev.cols.get((roles.base_variant, roles.base, ds))
        variants = {k[0]: c for k, c in ev.cols.items()
                    if k[2] == ds and not roles.is_base(k[0]) and k[1] == roles.base}
        if base is None or not variants:
            continue
        windows = [w for w in _windows(ev, ds)]
        written.append(_dnll_plot(folder / f"dnll_{ds.replace(':', '_')}.png", ds, base, variants, windows))
        written.append(_kld_plot(folder / f"kld_{ds.replace(':', '_')}.png", ds, variants))
    return written


def _windows(ev: Any, ds: str) -> list[Any]:
    run = next(r for r in ev.runs if r.dataset == ds)
    plan = run.plan.windows()  # the run's own plan (per-document runs: their documents)
    roles = ev.suite.roles
    return [plan[i] for i in ev.scored_windows[(roles.base_variant, roles.base, ds)]]


def _dnll_plot(path: Path, ds: str, base: np.ndarray, variants: dict[str, np.ndarray], windows: list[Any]) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5), dpi=110)
    x = [w.first_target for w in windows]
    for name, cols in variants.items():
        d = [float(np.mean(cols[w.first_target : w.end, 0] - base[w.first_target : w.end, 0])) for w in windows]
        ax.plot(x, d, lw=1.0, label=name)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set(title=f"{ds}: per-window ΔNLL vs base (nats/token)", xlabel="token position", ylabel="ΔNLL")
    return _save(fig, ax, path)


def _save(fig: Any, ax: Any, path: Path) -> Path:

    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def save_png(fig: Any, path: Path) -> Path:
    """Render in memory, then write complete or not at all (cache.write_output)."""
    import io

    import matplotlib.pyplot as plt

    from evalsuite.cache import write_output

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_output(path, buf.getvalue())
    return path


def _kld_plot(path: Path, ds: str, variants: dict[str, np.ndarray]) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5), dpi=110)
    k = PAIRED.index("kl")
    for name, cols in variants.items():
        kl = cols[:, k][np.isfinite(cols[:, k])]
        ax.hist(np.log10(np.maximum(kl, 1e-8)), bins=80, histtype="step", label=f"{name} (mean {kl.mean():.4f})")
    ax.set(title=f"{ds}: per-token KL(base || variant)", xlabel="log10 KLD (nats)", ylabel="tokens")
    return _save(fig, ax, path)
