"""Which Gauss points dominate the misfit of Eq. 17, at the best parameters of a calibration.

The misfit of a set of points is sum_p num_p / sum_p den_p with num_p = sum w_p (s_hat - s)^2 and
den_p = sum w_p s^2 over the point's retained steps and components: a point's share of the misfit is
num_p / sum num. ``contributions`` evaluates every selected point once; ``plot_contributions`` writes
``contributions.csv`` (all points) and ``contributions.png`` (the Gauss-point positions coloured by
share where the dataset holds coordinates, else the shares sorted).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from calibrate.selection import point_measures

TOP = 10


def _per_point(cal, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        pred = cal.surrogate(torch.as_tensor(phi, dtype=torch.float64)).cpu().numpy()
    w = np.ones(len(pred)) if cal.data.weights is None else cal.data.weights
    mask = cal.data.mask
    num = w * np.einsum("tij,ntij->n", mask, (pred - cal.data.stress) ** 2)
    den = w * np.einsum("tij,ntij->n", mask, cal.data.stress ** 2)
    return num, den


def contributions(cal, raw: dict) -> dict:
    """Shares of the misfit per selected point at the best parameters: the ``TOP`` largest with their
    dataset index, set, own misfit num_p / den_p, coordinates (m), element and Gauss point where
    stored, max eps_s and p range (Pa); ``_per_point`` (all points) is for :func:`plot_contributions`."""
    num, den = _per_point(cal, cal.best["phi"])
    share = num / num.sum() if num.sum() > 0 else np.zeros_like(num)
    sets = np.empty(len(num), dtype=object)
    for name, pts in (("train", cal.train), ("val", cal.val), ("test", cal.test)):
        sets[pts] = name
    idx = cal.data.index if cal.data.index is not None else np.arange(len(num))
    meas = {k: v[idx] for k, v in point_measures(raw).items()}
    order = np.argsort(-share)
    top = []
    for k in order[:TOP]:
        row = {"index": int(idx[k]), "set": sets[k], "share": float(share[k]),
               "misfit": float(num[k] / den[k]) if den[k] > 0 else None,
               "max_eps_s": float(meas["max_eps_s"][k]), "p_min": float(meas["p_min"][k]),
               "p_max": float(meas["p_max"][k])}
        if cal.data.coords is not None:
            row["coords"] = [float(c) for c in cal.data.coords[k]]
        for key in ("element", "gp"):
            if key in raw:
                row[key] = int(np.asarray(raw[key])[idx[k]])
        top.append(row)
    n5 = max(1, int(np.ceil(0.05 * len(num))))
    return {"at": "best parameters", "misfit_all_points": float(num.sum() / den.sum()) if den.sum() > 0 else None,
            f"share_of_top_{TOP}": float(share[order[:TOP]].sum()),
            "share_of_top_5_percent": float(share[order[:n5]].sum()), "top": top,
            "_per_point": {"index": idx, "share": share, "set": sets}}


def plot_contributions(rep: dict, raw: dict, out: Path) -> list[Path]:
    """``contributions.csv`` and ``contributions.png``; removes ``_per_point`` from ``rep``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pp = rep.pop("_per_point")
    out = Path(out)
    with open(out / "contributions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "set", "share"])
        w.writerows(zip(pp["index"].tolist(), pp["set"].tolist(), pp["share"].tolist()))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    coords = raw.get("coords")
    if coords is not None:
        coords = np.asarray(coords, float)
        ax.scatter(coords[:, 0], coords[:, 1], s=6, c="0.85", label="not selected")
        c = coords[pp["index"]]
        sc = ax.scatter(c[:, 0], c[:, 1], s=14, c=np.log10(np.maximum(pp["share"], 1e-12)), cmap="viridis")
        fig.colorbar(sc, ax=ax, label="log10 share of the misfit")
        for row in rep["top"][:5]:
            ax.annotate(str(row["index"]), row["coords"][:2], fontsize=7, color="r")
        ax.set_aspect("equal")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
        ax.legend(loc="lower right", fontsize=7)
    else:
        ax.semilogy(np.sort(pp["share"])[::-1], ".")
        ax.set_xlabel("points, by share")
        ax.set_ylabel("share of the misfit")
    ax.set_title(f"top {TOP} points: {rep[f'share_of_top_{TOP}']:.1%} of the misfit")
    fig.tight_layout()
    fig.savefig(out / "contributions.png", dpi=120)
    plt.close(fig)
    return [out / "contributions.csv", out / "contributions.png"]
