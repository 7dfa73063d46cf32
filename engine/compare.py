"""Run-against-run comparison (paper Section 4: Figs. 16-32, Tables 6-8, 11).

Runs are paired by time (default), by step or by a recorded loading quantity (``pair_by``, see
``engine.pairing``): each measure is taken on the reference's rows inside the range both runs cover,
the run interpolated there; a frame of the reference is set beside each run's frame nearest in the
pairing quantity (the offset is reported).

Error measures on the main boundary quantity y (the case's first curve) of a run against the
reference:

* ``mae``: mean absolute error, mean_k |y_run(k) - y_ref(k)|;
* ``peak_error``: |max_k y_run - max_k y_ref|;
* ``post_peak_error``: mean absolute error over the rows after the reference's peak.

Gauss-point measures (``dataset.h5`` in every run), over the stress components every run defines
(``xx yy xy`` when a run holds disk data, else all six): ``stress_mae`` (Pa), ``stress_rel``
(sqrt of sum (sigma_run - sigma_ref)^2 / sum sigma_ref^2), ``p_mae``, ``q_mae`` (Pa; in-plane p and q
for disk data, see ``engine.dataset``).

Loading-space overlap: the (p, q) pairs of every Gauss point at the reference's rows in the common
range, of the reference and of the run interpolated there (so that the sampling rate of a run does
not change the number), are binned on a common 60 x 60 grid spanning both; the overlap is the Jaccard index |A n B| / |A u B| of the
occupied bins (1 = the same region, 0 = disjoint).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine import pairing
from engine.compare_fields import field_pairs
from engine.compare_points import dataset_outputs, loading_overlap
from engine.dataset import components
from engine.recorders import read_curves
from engine.views import RunError, RunFolder, open_run

__all__ = ["check_same_case", "compare", "describe", "error_measures", "loading_overlap"]


def check_same_case(runs: list[RunFolder]) -> None:
    """Refuse runs of different cases or meshes."""
    ref = runs[0]
    key = lambda r: (Path(r.info["mesh"]["file"]).name, r.info["mesh"]["nodes"], r.info["mesh"]["elements"])  # noqa: E731
    for r in runs[1:]:
        if key(r) != key(ref):
            raise RunError(f"{r.path} and {ref.path} are runs on different meshes ({key(r)} vs {key(ref)}); "
                           f"compare runs of the same case")
        a = read_curves(r.path / "curves.csv").keys()
        b = read_curves(ref.path / "curves.csv").keys()
        if list(a) != list(b):
            raise RunError(f"{r.path} and {ref.path} record different curves ({list(a)} vs {list(b)}); "
                           f"compare runs of the same case")


def error_measures(x_ref, y_ref, x_run, y_run) -> dict:
    """MAE, peak and post-peak errors of y_run against y_ref (see module docstring)."""
    x_ref, y_ref, x_run, y_run = map(np.asarray, (x_ref, y_ref, x_run, y_run))
    if len(y_run) != len(y_ref) or not np.allclose(x_run, x_ref):
        order = np.argsort(x_run)
        y_run = np.interp(x_ref, x_run[order], y_run[order])
    err = np.abs(y_run - y_ref)
    k = int(np.argmax(y_ref))
    post = err[k + 1:] if k + 1 < len(err) else err[-1:]
    return {"mae": float(err.mean()), "peak_error": float(abs(y_run.max() - y_ref.max())),
            "post_peak_error": float(post.mean())}


def compare(paths: list, out: Path, field: str = "eps_s", points: list | None = None, component: str = "yy",
            seed: int = 0, pair_by: str = "time") -> dict:
    """Write the comparison of runs ``paths[1:]`` against the reference ``paths[0]`` into ``out``,
    paired by ``pair_by`` (``time``, ``step`` or a curve column); returns what ``comparison.json``
    holds. Raises :class:`RunError` (one line) before writing anything for runs that cannot be
    compared (other meshes or curves, no common range, a component a run does not define)."""
    runs = [open_run(p) for p in paths]
    check_same_case(runs)
    labels = _labels(runs)
    curves = [read_curves(r.path / "curves.csv") for r in runs]
    axes = [pairing.axis(lab, c, pair_by, r.path / "curves.csv") for lab, c, r in zip(labels, curves, runs)]
    ranges = [pairing.common_range(axes[0], a) for a in axes[1:]]
    data = _datasets(runs, labels, component, points)
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    names, x_name, y_name = _curve_names(curves[0])
    ref = axes[0]
    result = {"reference": labels[0], "runs": labels[1:],
              "pair_by": {"quantity": pair_by, "unit": ref.unit, "method": _method(pair_by)},
              "ranges": {lab: _bounds(ref, r) for lab, r in zip(labels[1:], ranges)}}
    result["errors"] = _error_tables(labels, curves, axes, ranges, y_name, out)
    _curve_plots(plt, labels, curves, names, x_name, out)
    result["frames"] = field_pairs(plt, runs, labels, axes, ranges, field, out)
    if data is not None:
        result.update(dataset_outputs(plt, labels, data, axes, ranges, points, component, seed, out))
    else:
        result["datasets"] = "not compared: not every run has a dataset.h5 (output.dataset = true)"
    (out / "comparison.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def describe(result: dict) -> str:
    """How the runs were paired, as lines for the terminal."""
    pb = result["pair_by"]
    lines = [f"paired by {pb['quantity']}: {pb['method']}"]
    for lab, (a, b) in result["ranges"].items():
        lines.append(f"  {lab}: common range {pairing.fmt(a, pb['unit'])} .. {pairing.fmt(b, pb['unit'])}")
    for f in result["frames"].get("pairs", []):
        ref = f"{result['reference']} step {f['step']} ({pairing.fmt(f['value'], pb['unit'])})"
        runs = ", ".join(f"{r['run']} step {r['step']} (offset {r['offset']:+.3g})" for r in f["runs"])
        lines.append(f"  frame {ref} <-> {runs}")
    if "note" in result["frames"]:
        lines.append(f"  frames: {result['frames']['note']}")
    if "invariants" in result:
        lines.append(f"  Gauss points: components {' '.join(result['components'])}; {result['invariants']}")
    elif "datasets" in result:
        lines.append(f"  Gauss points: {result['datasets']}")
    return "\n".join(lines)


def _method(pair_by: str) -> str:
    what = {"time": "time (s)", "step": "step number"}.get(pair_by, f"the curve {pair_by!r}")
    return (f"rows matched by {what}: runs interpolated linearly onto the reference's rows inside the common "
            f"range; frames: each run's frame nearest in {pair_by}")


def _bounds(ref: pairing.Axis, rng: tuple) -> list[float]:
    """A common range in the quantity's own values, in the order the runs go."""
    a, b = (ref.sign * v for v in rng)
    return [a, b]


def _datasets(runs: list[RunFolder], labels: list[str], component: str, points: list | None) -> list | None:
    """Every run's dataset (None when a run has none), checked for ``component`` and ``points``."""
    from engine.dataset import read_dataset

    if not all((r.path / "dataset.h5").is_file() for r in runs):
        return None
    data = [read_dataset(r.path / "dataset.h5") for r in runs]
    for lab, d in zip(labels, data):
        if component not in components(d):
            raise RunError(f"--component {component}: not defined by {lab}'s dataset (disk RVEs: sigma_zz is "
                           f"undefined); allowed: {', '.join(components(d))}")
        if d["stress"].shape[0] != data[0]["stress"].shape[0]:
            raise RunError(f"{lab} and {labels[0]}: datasets of different Gauss points")
    n = data[0]["stress"].shape[0]
    bad = [p for p in points or [] if not 0 <= p < n]
    if bad:
        raise RunError(f"--points: {bad[0]} is not a Gauss point (the datasets have 0..{n - 1})")
    return data


def _pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curve_names(curves: dict) -> tuple[list[str], str, str]:
    """Recorded quantities (all but step/time), the abscissa (second one, else time), the main y (first)."""
    names = [k for k in curves if k not in ("step", "time")]
    y_name, x_name = names[0], (names[1] if len(names) > 1 else "time")
    return names, x_name, y_name


def _error_tables(labels: list[str], curves: list[dict], axes: list, ranges: list, y_name: str,
                  out: Path) -> list[dict]:
    """Error measures of each run's ``y_name`` against the reference on the paired rows: errors.csv,
    errors.md; the rows."""
    ref = axes[0]
    key_ref = ref.key(ref.at_steps(curves[0]["step"]))
    rows = []
    for lab, c, ax, (lo, hi) in zip(labels[1:], curves[1:], axes[1:], ranges):
        keep = pairing.in_range(key_ref, lo, hi)
        e = error_measures(key_ref[keep], curves[0][y_name][keep], ax.key(ax.at_steps(c["step"])), c[y_name])
        a, b = _bounds(ref, (lo, hi))
        rows.append({"run": lab, "quantity": y_name, **e, "pair_by": ref.name, "from": a, "to": b,
                     "rows": int(keep.sum())})
    cols = ["run", "quantity", "mae", "peak_error", "post_peak_error", "pair_by", "from", "to", "rows"]
    _write_csv(out / "errors.csv", cols, rows)
    md = [f"Errors of `{y_name}` against the reference `{labels[0]}` (units of `{y_name}`), paired by "
          f"{ref.name} on the reference's rows in the common range", "",
          f"| run | MAE | peak error | post-peak error | {ref.name} range | rows |", "|---|---|---|---|---|---|"]
    md += [f"| {r['run']} | {r['mae']:.4g} | {r['peak_error']:.4g} | {r['post_peak_error']:.4g} | "
           f"{pairing.fmt(r['from'], ref.unit)} .. {pairing.fmt(r['to'], ref.unit)} | {r['rows']} |" for r in rows]
    (out / "errors.md").write_text("\n".join(md) + "\n")
    return rows


def _write_csv(path: Path, cols: list[str], rows: list[dict]) -> None:
    """``rows`` as CSV with the header ``cols`` (floats written exactly, with repr)."""
    with open(path, "w") as f:
        f.write(",".join(cols) + "\n")
        for row in rows:
            f.write(",".join(repr(float(row[c])) if isinstance(row[c], float) else str(row[c]) for c in cols) + "\n")


def _curve_plots(plt, labels: list[str], curves: list[dict], names: list[str], x_name: str, out: Path) -> None:
    """One curve_<name>.png per recorded quantity, all runs overlaid against ``x_name``."""
    for name in names:
        if name == x_name:
            continue
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for lab, c, style in zip(labels, curves, ["k-", "C0--", "C1-.", "C2:", "C3--", "C4-."]):
            ax.plot(c[x_name], c[name], style, lw=1.5, label=lab)
        ax.set_xlabel(x_name)
        ax.set_ylabel(name)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"curve_{name}.png", dpi=120)
        plt.close(fig)


def _labels(runs: list[RunFolder]) -> list[str]:
    labels = []
    for r in runs:
        lab = r.path.name
        while lab in labels:
            lab += "'"
        labels.append(lab)
    return labels
