"""Element (single material point) tests: drained triaxial, plane-strain, isotropic, simple shear.

Stress and strain are tension positive, Pa, at the material; the reported invariants are
geotechnical (compression positive): ``eps_a`` axial strain, ``eps_v`` volumetric strain,
``p`` mean stress (Pa), ``q`` deviator stress (Pa), ``e`` void ratio.

Tests (``n`` steps, final axial strain ``eps``; axes 0, 1, 2 = x, y, z):

* ``ctc`` conventional drained triaxial compression: axial z strain-controlled to ``-eps``,
  lateral stresses sigma_xx = sigma_yy = -p0 held (mixed control, Newton on the lateral strain).
* ``ptc`` plane-strain compression: axial y strain-controlled, eps_zz = 0 (out of plane, as in
  the 2D FEM), lateral sigma_xx = -p0 held.
* ``iso`` isotropic compression to eps_ii = -eps/3 each (volumetric ``eps``) in the first half
  of the steps, unloading back to zero strain in the second half.
* ``shear`` drained simple shear: gamma = 2 eps_xy strain-controlled to ``eps``, eps_xx = eps_zz = 0,
  vertical sigma_yy = -p0 held.

Mixed control: each step, the free strain amplitudes are found by Newton's method with a
finite-difference Jacobian; all trial points run in one batch launch from the committed state.
"""
from __future__ import annotations

import logging

import numpy as np

from materials.invariants import p_q_3d

log = logging.getLogger(__name__)

TESTS = ("ctc", "ptc", "iso", "shear", "replay")
STRESS_COLS = ("s11", "s22", "s33", "s12", "s13", "s23")
STRAIN_COLS = ("eps11", "eps22", "eps33", "eps12", "eps13", "eps23")
STATE_COLS = {"H": "H", "eps_s": "eps_s_p", "eps_v": "eps_v_p"}
_IDX = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def _unit(i, j):
    m = np.zeros((3, 3))
    m[i, j] = m[j, i] = 1.0
    return m


def loading_setup(test: str, p0: float, eps: float, steps: int):
    """(controlled increment per step (steps, 3, 3), free modes (k, 3, 3), targets (k,), axial index)."""
    d = np.zeros((steps, 3, 3))
    if test == "ctc":
        d[:, 2, 2] = -eps / steps
        return d, np.array([_unit(0, 0) + _unit(1, 1)]), np.array([-p0]), 2
    if test == "ptc":
        d[:, 1, 1] = -eps / steps
        return d, np.array([_unit(0, 0)]), np.array([-p0]), 1
    if test == "iso":
        half = steps // 2
        d[:half] = -eps / 3.0 / half * np.eye(3)
        d[half:] = eps / 3.0 / (steps - half) * np.eye(3)
        return d, np.zeros((0, 3, 3)), np.zeros(0), 2
    if test == "shear":
        d[:, 0, 1] = d[:, 1, 0] = 0.5 * eps / steps
        return d, np.array([_unit(1, 1)]), np.array([-p0]), 1
    raise ValueError(f"test must be one of ctc, ptc, iso, shear, got {test!r}")


class MixedControl:
    """Drive a material batch point with prescribed strain increments and held stress components."""

    def __init__(self, model: str, p0: float, params=None, options=None, n_free: int = 1,
                 tol: float | None = None, max_iter: int = 25):
        import taichi as ti

        from kernels import registry, runtime

        self.m = n_free + 1
        self.batch = registry.point_batch(model, self.m, p0, params, options)
        real = runtime.real()
        self.np_real = runtime.np_real()
        self.deps = ti.Matrix.field(3, 3, real, shape=self.m)
        self.stress = ti.Matrix.field(3, 3, real, shape=self.m)
        self.sig = -p0 * np.eye(3)
        self.state = self._point0(self.batch.snapshot())
        eps = float(np.finfo(self.np_real).eps)
        self.tol = tol if tol is not None else max(1e-7, 100 * eps) * p0
        self.rel_h = max(1e-6, 10 * np.sqrt(eps))     # finite-difference step, relative (f32 needs more)
        self.max_iter = max_iter
        self.iterations = 0

    @staticmethod
    def _point0(snap: dict) -> dict:
        return {k: np.asarray(v)[0] for k, v in snap.items() if k != "counters"}

    def _eval(self, D: np.ndarray) -> tuple[np.ndarray, dict]:
        self.batch.restore({k: np.repeat(v[None], self.m, axis=0) for k, v in self.state.items()})
        self.stress.from_numpy(np.repeat(self.sig[None], self.m, axis=0).astype(self.np_real))
        self.deps.from_numpy(D.astype(self.np_real))
        self.batch.update(self.deps, self.stress)
        return self.stress.to_numpy().astype(float), self.batch.snapshot()

    def step(self, d_ctrl: np.ndarray, modes: np.ndarray, targets: np.ndarray, x0: np.ndarray):
        """Advance one step; returns (strain increment, free amplitudes)."""
        k = len(modes)
        x = np.array(x0, dtype=float)
        norms = np.array([np.sum(mo * mo) for mo in modes])
        h = self.rel_h * max(np.abs(d_ctrl).max(), 1e-9)
        for _ in range(self.max_iter if k else 1):
            D = np.repeat((d_ctrl + np.tensordot(x, modes, axes=1))[None], self.m, axis=0)
            for j in range(k):
                D[j + 1] += h * modes[j]
            S, snap = self._eval(D)
            self.iterations += 1
            res = np.array([[np.sum(S[i] * modes[j]) / norms[j] - targets[j] for j in range(k)]
                            for i in range(self.m)])
            if k == 0 or np.abs(res[0]).max() <= self.tol:
                break
            J = np.stack([(res[j + 1] - res[0]) / h for j in range(k)], axis=1)
            x = x - np.linalg.solve(J, res[0])
        else:
            log.warning("mixed control: residual %.3g Pa after %d iterations", np.abs(res[0]).max(), self.max_iter)
        self.sig = S[0]
        self.state = self._point0(snap)
        return D[0], x


def run_test(model: str, test: str, p0: float = 100e3, eps: float = 0.2, steps: int = 2000,
             params: dict | None = None, options: dict | None = None) -> dict:
    """Run an element test; returns columns (numpy arrays, row 0 = initial state).

    Columns: eps_a, eps_v, p, q, e, gamma (shear only), s11 ... s23 (Pa, tension +),
    eps11 ... eps23 (tension +), then the internal state (H; IME eps_s_p, eps_v_p) and the model
    diagnostics (f, and for CSUH xi, R, Mf, Mc, Mtheta, q_tilde). ``e`` is NaN for models without a
    void ratio (ime, elastic).
    """
    if test not in TESTS[:-1]:
        raise ValueError(f"test must be one of {', '.join(TESTS[:-1])}, got {test!r}")
    if steps < 2:
        raise ValueError("steps must be >= 2")
    d, modes, targets, ax = loading_setup(test, p0, eps, steps)
    drv = MixedControl(model, p0, params, options, n_free=len(modes))
    strain = np.zeros((steps + 1, 3, 3))
    stress = np.zeros((steps + 1, 3, 3))
    stress[0] = drv.sig
    e = np.full(steps + 1, np.nan)
    extra = {}

    def record(n):
        if "e" in drv.state:
            e[n] = drv.state["e"]
        for k, v in drv.state.items():
            if k in STATE_COLS:
                extra.setdefault(STATE_COLS[k], np.full(steps + 1, np.nan))[n] = v
        dg = drv.batch.diagnostics(np.repeat(drv.sig[None], drv.m, axis=0))
        for k, v in dg.items():
            if k not in ("p", "q"):
                extra.setdefault(k, np.full(steps + 1, np.nan))[n] = v[0]

    record(0)
    x = np.zeros(len(modes))
    for n in range(steps):
        D, x = drv.step(d[n], modes, targets, x)
        strain[n + 1] = strain[n] + D
        stress[n + 1] = drv.sig
        record(n + 1)
    p, q = p_q_3d(stress)
    cols = {"eps_a": -strain[:, ax, ax], "eps_v": -np.trace(strain, axis1=1, axis2=2), "p": p, "q": q, "e": e}
    if test == "shear":
        cols["gamma"] = 2.0 * strain[:, 0, 1]
    for name, (i, j) in zip(STRESS_COLS, _IDX):
        cols[name] = stress[:, i, j]
    for name, (i, j) in zip(STRAIN_COLS, _IDX):
        cols[name] = strain[:, i, j]
    cols.update(extra)
    log.info("element %s %s: %d steps, %d batch evaluations", model, test, steps, drv.iterations)
    return cols


def write_csv(path, cols: dict) -> None:
    names = list(cols)
    data = np.column_stack([cols[n] for n in names])
    np.savetxt(path, data, delimiter=",", header=",".join(names), comments="", fmt="%.10g")


def plot(path, cols: dict, title: str = "") -> None:
    """q-eps_a, eps_v-eps_a, e-ln p and the q-p stress path as a PNG (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shear = "gamma" in cols
    x = 100.0 * (cols["gamma"] if shear else cols["eps_a"])
    xl = r"shear strain $\gamma$ (%)" if shear else r"axial strain $\varepsilon_a$ (%)"
    fig, ax = plt.subplots(2, 2, figsize=(10, 8))
    ax[0, 0].plot(x, cols["q"] / 1e3)
    ax[0, 0].set(xlabel=xl, ylabel="deviator stress q (kPa)")
    ax[0, 1].plot(x, 100.0 * cols["eps_v"])
    ax[0, 1].set(xlabel=xl, ylabel=r"volumetric strain $\varepsilon_v$ (%, compression +)")
    if np.all(np.isnan(cols["e"])):
        ax[1, 0].text(0.5, 0.5, "no void ratio in this model", ha="center", va="center",
                      transform=ax[1, 0].transAxes)
    else:
        ax[1, 0].semilogx(np.maximum(cols["p"], 1e-3) / 1e3, cols["e"])
    ax[1, 0].set(xlabel="mean stress p (kPa, log scale)", ylabel="void ratio e")
    ax[1, 1].plot(cols["p"] / 1e3, cols["q"] / 1e3)
    ax[1, 1].set(xlabel="p (kPa)", ylabel="q (kPa)", title="stress path")
    for a in ax.flat:
        a.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
