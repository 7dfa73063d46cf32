"""Gauss-point parts of a comparison: stress histories, stress errors and the loading-space overlap,
over the stress components every run defines (see ``engine.compare``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine import pairing
from engine.dataset import COMPONENTS, COMPONENTS_IJ, IN_PLANE, in_plane_only, invariants
from engine.views import RunError

STYLES = ["k-", "C0--", "C1-.", "C2:", "C3--", "C4-."]
COLOURS = ["k", "C0", "C1", "C2", "C3", "C4"]


def loading_overlap(data_a: dict, data_b: dict, bins: int = 60, in_plane: bool | None = None) -> float:
    """Jaccard overlap of the occupied (p, q) bins of two datasets; in-plane p, q when either holds
    disk data (``in_plane`` None) or when asked. RunError when a dataset has no finite (p, q)."""
    if in_plane is None:
        in_plane = in_plane_only(data_a) or in_plane_only(data_b)
    pts = [_pq(d, in_plane) for d in (data_a, data_b)]
    if not all(len(p) for p in pts):
        raise RunError("loading-space overlap: a dataset has no finite (p, q) values")
    allpts = np.concatenate(pts)
    lo, hi = allpts.min(axis=0), allpts.max(axis=0)
    hi = np.where(hi > lo, hi, lo + 1.0)
    occ = []
    for pq in pts:
        h, _, _ = np.histogram2d(pq[:, 0], pq[:, 1], bins=bins, range=[[lo[0], hi[0]], [lo[1], hi[1]]])
        occ.append(h > 0)
    union = np.logical_or(*occ).sum()
    return float(np.logical_and(*occ).sum() / union) if union else 1.0


def dataset_outputs(plt, labels: list[str], data: list[dict], axes: list, ranges: list, points: list | None,
                    component: str, seed: int, out: Path) -> dict:
    """Histories at a few points, dataset_errors.csv, loading_space.png and overlap.csv; the numbers."""
    plane = any(in_plane_only(d) for d in data)
    comps = IN_PLANE if plane else COMPONENTS
    keys = [a.key(a.at_steps(d["step"])) for a, d in zip(axes, data)]
    n = data[0]["stress"].shape[0]
    pts = points or [int(k) for k in np.sort(np.random.default_rng(seed).choice(n, size=min(4, n), replace=False))]
    _gauss_point_plot(plt, labels, data, axes, pts, component, out)
    rows, overlaps = [], {}
    for lab, d, a, key, (lo, hi) in zip(labels[1:], data[1:], axes[1:], keys[1:], ranges):
        ref, run = _paired(data[0], keys[0], d, key, lo, hi)
        rows.append({"run": lab, **_stress_errors(ref, run, comps, plane), "pair_by": a.name,
                     "from": a.sign * lo, "to": a.sign * hi, "rows": ref["stress"].shape[1]})
        overlaps[lab] = loading_overlap(ref, run, in_plane=plane)
    cols = ["run", "components", "stress_mae", "stress_rel", "p_mae", "q_mae", "pair_by", "from", "to", "rows"]
    with open(out / "dataset_errors.csv", "w") as f:
        f.write(",".join(cols) + "\n")
        f.writelines(",".join(repr(float(r[c])) if isinstance(r[c], float) else str(r[c]) for c in cols) + "\n"
                     for r in rows)
    _loading_space(plt, labels, data, keys, ranges, plane, overlaps, out)
    with open(out / "overlap.csv", "w") as f:
        f.write("run,overlap\n" + "".join(f"{k},{v!r}\n" for k, v in overlaps.items()))
    return {"components": list(comps), "invariants": _invariants_text(plane), "points": pts,
            "dataset_errors": rows, "overlap": overlaps}


def _invariants_text(plane: bool) -> str:
    if plane:
        return "in-plane p = -(s11 + s22)/2, q = sqrt((s11 - s22)^2 + 4 s12^2) (a run holds disk data)"
    return "p = -tr(sigma)/3, q = sqrt(3/2 s:s)"


def _pq(d: dict, in_plane: bool) -> np.ndarray:
    inv = invariants(d, in_plane)
    pq = np.stack([inv["p"].ravel(), inv["q"].ravel()], axis=1)
    return pq[np.isfinite(pq).all(axis=1)]


def _rows(d: dict, key: np.ndarray, lo: float, hi: float) -> dict:
    """The dataset restricted to its rows inside [lo, hi] of the pairing key."""
    keep = pairing.in_range(key, lo, hi)
    return {**d, "stress": d["stress"][:, keep], "strain": d["strain"][:, keep]}


def _paired(ref: dict, key_ref: np.ndarray, run: dict, key_run: np.ndarray, lo: float, hi: float):
    """The reference's rows inside [lo, hi] and the run interpolated onto them."""
    keep = pairing.in_range(key_ref, lo, hi)
    at = key_ref[keep]
    ref = {**ref, "stress": ref["stress"][:, keep], "strain": ref["strain"][:, keep]}
    run = {**run, "stress": pairing.interp_rows(run["stress"], key_run, at),
           "strain": pairing.interp_rows(run["strain"], key_run, at)}
    return ref, run


def _stress_errors(ref: dict, run: dict, comps: tuple, plane: bool) -> dict:
    """stress_mae, stress_rel over ``comps``; p_mae, q_mae (see engine.compare)."""
    idx = [COMPONENTS_IJ[c] for c in comps]
    a = np.stack([ref["stress"][..., i, j] for i, j in idx])
    b = np.stack([run["stress"][..., i, j] for i, j in idx])
    diff = b - a
    ia, ib = invariants(ref, plane), invariants(run, plane)
    return {"components": " ".join(comps), "stress_mae": float(np.mean(np.abs(diff))),
            "stress_rel": float(np.sqrt(np.sum(diff ** 2) / max(np.sum(a ** 2), 1e-300))),
            "p_mae": float(np.mean(np.abs(ib["p"] - ia["p"]))), "q_mae": float(np.mean(np.abs(ib["q"] - ia["q"])))}


def _gauss_point_plot(plt, labels, data, axes, pts: list, component: str, out: Path) -> None:
    """-sigma_<component> (kPa) against the pairing quantity at Gauss points ``pts``."""
    i, j = COMPONENTS_IJ[component]
    ref = axes[0]
    fig, axs = plt.subplots(1, len(pts), figsize=(4 * len(pts), 3.6), squeeze=False)
    for ax, k in zip(axs[0], pts):
        for lab, d, a, style in zip(labels, data, axes, STYLES * 4):
            ax.plot(a.at_steps(d["step"]), -d["stress"][k, :, i, j] / 1e3, style, lw=1.2, label=lab)
        ax.set_title(f"Gauss point {k}")
        ax.set_xlabel(ref.name + (f" ({ref.unit})" if ref.unit and ref.unit != "-" else ""))
        ax.set_ylabel(f"$-\\sigma_{{{component}}}$ (kPa)")
        ax.grid(alpha=0.3)
    axs[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"gauss_points_s{component}.png", dpi=120)
    plt.close(fig)


def _loading_space(plt, labels, data, keys, ranges, plane: bool, overlaps: dict, out: Path) -> None:
    """(p, q) scatter in kPa of each run's paired rows (loading_space.png)."""
    spans = [(min(r[0] for r in ranges), max(r[1] for r in ranges)), *ranges]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for lab, d, key, (lo, hi), color in zip(labels, data, keys, spans, COLOURS * 4):
        pq = _pq(_rows(d, key, lo, hi), plane) / 1e3
        ax.scatter(pq[:, 0], pq[:, 1], s=1, alpha=0.3, color=color, label=f"{lab} ({len(pq)} states)")
    prefix = "in-plane " if plane else ""
    ax.set_xlabel(f"{prefix}p (kPa)")
    ax.set_ylabel(f"{prefix}q (kPa)")
    ax.set_title("loading space; overlap " + ", ".join(f"{k}: {v:.2f}" for k, v in overlaps.items()), fontsize=9)
    ax.legend(markerscale=8, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loading_space.png", dpi=120)
    plt.close(fig)
