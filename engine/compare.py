"""Run-against-run comparison (paper Section 4: Figs. 16-32, Tables 6-8, 11).

Error measures on the main boundary quantity y (the case's first curve) of a run against the
reference run, on the reference's steps (the run's curve interpolated on the reference abscissa
when step counts differ):

* ``mae``: mean absolute error, mean_k |y_run(k) - y_ref(k)|;
* ``peak_error``: |max_k y_run - max_k y_ref|;
* ``post_peak_error``: mean absolute error over the steps after the reference's peak.

Loading-space overlap of two runs' Gauss-point data (``dataset.h5``): the (p, q) pairs of every
Gauss point and row are binned on a common 60 x 60 grid spanning both; the overlap is the
Jaccard index |A n B| / |A u B| of the occupied bins (1 = the same region, 0 = disjoint).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.recorders import read_curves
from materials.invariants import stress_strain
from engine.views import RunError, RunFolder, open_run, render


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


def loading_overlap(data_a: dict, data_b: dict, bins: int = 60) -> float:
    """Jaccard overlap of the occupied (p, q) bins of two datasets (see module docstring)."""
    pts = []
    for d in (data_a, data_b):
        inv = stress_strain(d["stress"], d["strain"])
        pq = np.stack([inv["p"].ravel(), inv["q"].ravel()], axis=1)
        pts.append(pq[np.isfinite(pq).all(axis=1)])
    allpts = np.concatenate(pts)
    lo, hi = allpts.min(axis=0), allpts.max(axis=0)
    hi = np.where(hi > lo, hi, lo + 1.0)
    occ = []
    for pq in pts:
        h, _, _ = np.histogram2d(pq[:, 0], pq[:, 1], bins=bins, range=[[lo[0], hi[0]], [lo[1], hi[1]]])
        occ.append(h > 0)
    union = np.logical_or(*occ).sum()
    return float(np.logical_and(*occ).sum() / union) if union else 1.0


def compare(paths: list, out: Path, field: str = "eps_s", points: list | None = None, component: str = "yy",
            seed: int = 0) -> dict:
    """Write the comparison of runs ``paths[1:]`` against the reference ``paths[0]`` into ``out``."""
    plt = _pyplot()
    runs = [open_run(p) for p in paths]
    check_same_case(runs)
    out.mkdir(parents=True, exist_ok=True)
    labels = _labels(runs)
    curves = [read_curves(r.path / "curves.csv") for r in runs]
    names, x_name, y_name = _curve_names(curves[0])
    written = {"errors": _error_tables(labels, curves, x_name, y_name, out)}
    _curve_plots(plt, labels, curves, names, x_name, out)
    picks = _field_steps(runs, labels, field, out)
    if picks:
        written["field_steps"] = picks
    if all((r.path / "dataset.h5").is_file() for r in runs):
        written["overlap"] = _dataset_plots(plt, runs, labels, points, component, seed, out)
    return written


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


def _error_tables(labels: list[str], curves: list[dict], x_name: str, y_name: str, out: Path) -> list[dict]:
    """Error measures of each run's ``y_name`` against the reference: errors.csv, errors.md; the rows."""
    rows = []
    for lab, c in zip(labels[1:], curves[1:]):
        e = error_measures(curves[0][x_name], curves[0][y_name], c[x_name], c[y_name])
        rows.append({"run": lab, "quantity": y_name, **e})
    with open(out / "errors.csv", "w") as f:
        f.write("run,quantity,mae,peak_error,post_peak_error\n")
        for row in rows:
            f.write(f"{row['run']},{row['quantity']},{row['mae']!r},{row['peak_error']!r},{row['post_peak_error']!r}\n")
    md = [f"Errors of `{y_name}` against the reference `{labels[0]}` (units of `{y_name}`)", "",
          "| run | MAE | peak error | post-peak error |", "|---|---|---|---|"]
    md += [f"| {r['run']} | {r['mae']:.4g} | {r['peak_error']:.4g} | {r['post_peak_error']:.4g} |" for r in rows]
    (out / "errors.md").write_text("\n".join(md) + "\n")
    return rows


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


def _field_steps(runs: list[RunFolder], labels: list[str], field: str, out: Path) -> list | None:
    """Side-by-side ``field`` at up to three steps all runs saved (fields_<field>.png); the steps."""
    common = sorted(set.intersection(*[{f[1] for f in r.frames} for r in runs]))
    if not common:
        return None
    picks = sorted({common[len(common) // 3], common[2 * len(common) // 3], common[-1]})
    _field_grid(runs, labels, picks, field, out / f"fields_{field}.png")
    return picks


def _dataset_plots(plt, runs: list[RunFolder], labels: list[str], points: list | None, component: str,
                   seed: int, out: Path) -> dict:
    """Gauss-point histories and loading space from the runs' dataset.h5; the overlaps."""
    from engine.dataset import read_dataset

    data = [read_dataset(r.path / "dataset.h5") for r in runs]
    n = data[0]["stress"].shape[0]
    pts = points or list(np.sort(np.random.default_rng(seed).choice(n, size=min(4, n), replace=False)))
    _gauss_point_plot(plt, labels, data, pts, component, out)
    return _loading_space(plt, labels, data, out)


def _gauss_point_plot(plt, labels: list[str], data: list[dict], pts: list, component: str, out: Path) -> None:
    """-sigma_<component> (kPa) against step at the Gauss points ``pts`` (gauss_points_s<component>.png)."""
    i, j = {"xx": (0, 0), "yy": (1, 1), "zz": (2, 2), "xy": (0, 1), "yz": (1, 2), "xz": (0, 2)}[component]
    fig, axes = plt.subplots(1, len(pts), figsize=(4 * len(pts), 3.6), squeeze=False)
    for ax, k in zip(axes[0], pts):
        for lab, d, style in zip(labels, data, ["k-", "C0--", "C1-.", "C2:"]):
            ax.plot(d["step"], -d["stress"][k, :, i, j] / 1e3, style, lw=1.2, label=lab)
        ax.set_title(f"Gauss point {k}")
        ax.set_xlabel("step")
        ax.set_ylabel(f"$-\\sigma_{{{component}}}$ (kPa)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"gauss_points_s{component}.png", dpi=120)
    plt.close(fig)


def _loading_space(plt, labels: list[str], data: list[dict], out: Path) -> dict:
    """(p, q) scatter in kPa (loading_space.png) and each run's overlap with the reference (overlap.csv)."""
    overlaps = {}
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for lab, d, color in zip(labels, data, ["k", "C0", "C1", "C2"]):
        inv = stress_strain(d["stress"], d["strain"])
        ax.scatter(inv["p"].ravel() / 1e3, inv["q"].ravel() / 1e3, s=1, alpha=0.3, color=color, label=lab)
    for lab, d in zip(labels[1:], data[1:]):
        overlaps[lab] = loading_overlap(data[0], d)
    ax.set_xlabel("p (kPa)")
    ax.set_ylabel("q (kPa)")
    ax.set_title("loading space; overlap " + ", ".join(f"{k}: {v:.2f}" for k, v in overlaps.items()))
    ax.legend(markerscale=8, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loading_space.png", dpi=120)
    plt.close(fig)
    with open(out / "overlap.csv", "w") as f:
        f.write("run,overlap\n" + "".join(f"{k},{v!r}\n" for k, v in overlaps.items()))
    return overlaps


def _labels(runs: list[RunFolder]) -> list[str]:
    labels = []
    for r in runs:
        lab = r.path.name
        while lab in labels:
            lab += "'"
        labels.append(lab)
    return labels


def _field_grid(runs, labels, steps, field, out: Path) -> None:
    import meshio
    import pyvista as pv

    from engine.views import _quiet_vtk, field_values

    _quiet_vtk()
    lo, hi = np.inf, -np.inf
    for r in runs:
        for s in steps:
            v = field_values(meshio.read(r.frame_at_step(s)[2]), field)[0]
            lo, hi = min(lo, np.nanmin(v)), max(hi, np.nanmax(v))
    p = pv.Plotter(off_screen=True, shape=(len(steps), len(runs)), window_size=[420 * len(runs), 340 * len(steps)])
    for a, s in enumerate(steps):
        for b, (r, lab) in enumerate(zip(runs, labels)):
            p.subplot(a, b)
            k = [f[1] for f in r.frames].index(s)
            bar = {"vertical": False, "position_x": 0.15, "position_y": 0.03, "width": 0.7, "height": 0.08}
            render(r, field, k, plotter=p, clim=(lo, hi if hi > lo else lo + 1e-12), title=f"{lab}, step {s}",
                   bar=bar)
    p.screenshot(str(out))
    p.close()
