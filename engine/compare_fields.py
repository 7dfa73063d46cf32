"""Side-by-side field pictures of compared runs at frames paired by the comparison's quantity."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine import pairing
from engine.views import RunFolder


def field_pairs(plt, runs: list[RunFolder], labels: list[str], axes: list, ranges: list, field: str,
                out: Path) -> dict:
    """Up to three reference frames inside the range every run covers, each beside every run's frame
    nearest in the pairing quantity; drawn into ``fields_<field>.png``. Returns ``pairs`` (reference
    step and value, each run's step, value and offset) and ``picture``, or a ``note`` why none."""
    if not all(r.frames for r in runs):
        return {"pairs": [], "note": "not every run has VTK frames"}
    lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
    keys = [_frame_keys(r, a) for r, a in zip(runs, axes)]
    cand = np.flatnonzero(pairing.in_range(keys[0], lo, hi)) if hi >= lo else np.array([], int)
    if not len(cand):
        return {"pairs": [], "note": "no reference frame inside the range all runs cover"}
    picks = sorted({int(cand[len(cand) // 3]), int(cand[2 * len(cand) // 3]), int(cand[-1])})
    pairs, index = [], []
    ref = axes[0]
    for k in picks:
        row = {"step": runs[0].frames[k][1], "value": ref.sign * float(keys[0][k]), "runs": []}
        ks = [k]
        for lab, r, a, kk in zip(labels[1:], runs[1:], axes[1:], keys[1:]):
            j = pairing.nearest(kk, keys[0][k])
            row["runs"].append({"run": lab, "step": r.frames[j][1], "value": a.sign * float(kk[j]),
                                "offset": a.sign * float(kk[j] - keys[0][k])})
            ks.append(j)
        pairs.append(row)
        index.append(ks)
    _draw(plt, runs, labels, pairs, index, ref, field, out / f"fields_{field}.png")
    return {"pairs": pairs, "picture": f"fields_{field}.png"}


def _frame_keys(run: RunFolder, axis: pairing.Axis) -> np.ndarray:
    """The increasing pairing key of each frame (time: the frame's own time)."""
    if axis.name == "time":
        return axis.key([f[0] for f in run.frames])
    return axis.key(axis.at_steps([f[1] for f in run.frames]))


def _draw(plt, runs, labels, pairs, index, ref, field, out: Path) -> None:
    """The panels (rows: paired frames, columns: runs) with one colour bar, as a PNG."""
    import meshio
    import pyvista as pv

    from engine.views import _quiet_vtk, field_figure, field_values, panel_image

    _quiet_vtk()
    used = [(runs[b], k) for ks in index for b, k in enumerate(ks)]
    values = [field_values(meshio.read(r.frames[k][2]), field) for r, k in used]
    lo = min(float(np.nanmin(v[0])) for v in values)
    hi = max(float(np.nanmax(v[0])) for v in values)
    clim = (lo, hi if hi > lo else lo + max(abs(lo), 1.0) * 1e-9)
    plotter = pv.Plotter(off_screen=True, window_size=[480, 380])
    panels = []
    for pair, ks in zip(pairs, index):
        row = []
        for b, (run, k) in enumerate(zip(runs, ks)):
            step = run.frames[k][1]
            title = f"{labels[b]}\nstep {step}, {ref.name} = {pairing.fmt(_value(pair, b), ref.unit)}"
            if b:
                title += f" ({pair['runs'][b - 1]['offset']:+.3g})"
            row.append((panel_image(run, field, k, clim, plotter=plotter), title))
        panels.append(row)
    plotter.close()
    fig = field_figure(plt, panels, clim, f"{field} [{values[0][2]}]")
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _value(pair: dict, b: int) -> float:
    return pair["value"] if b == 0 else pair["runs"][b - 1]["value"]
