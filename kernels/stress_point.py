"""Batched constitutive stress-point updates (CSUH, MCC, enhanced IME) for the FEM and for calibration.

Interface convention: stresses and strains are full 3x3, tension positive, Pa. Each model converts
to its internal compression-positive units once on entry and exit (``stress_scale``).

* :class:`StressPointBatch` — N Gauss points advanced by one strain increment per :meth:`update`
  (the FEM's material). Data-dependent sub-step loop (spec §5.1), not differentiable.
* :class:`StressPathBatch` — N points along prescribed total-strain histories, differentiable with
  respect to every parameter (``ti.ad.Tape``). One kernel launch per step writing a new slot of the
  stress/state history (no loop-carried locals, no AD stack: with taichi 1.7.4 reverse mode gave
  wrong gradients for loop-carried matrices, see docs/materials.md), sub-steps unrolled to a static
  bound ``nb`` (the largest sub-step count in the data) and masked. Each point may have its own
  number of steps and report steps (the calibration bridge's per-point refined paths,
  :meth:`StressPathBatch.load_paths`); arrays in and out may be numpy arrays or torch tensors.
* :func:`replay` — stresses for strain histories (forward only), used by ``engine element --test replay``.

Both classes call the one integrator :func:`materials.csuh_integrator.substep`.
"""

import logging

import numpy as np
import taichi as ti

from kernels import registry, runtime
from kernels.material import NoReports
from materials.csuh import (A_DELTA, A_DKDM, A_EPSREF, A_K0, A_LINEAR, A_M0, A_NSUB, A_P0, A_PMIN,
                            A_QTOL, A_TMAX, N_AUX)
from materials.csuh_integrator import substep, substep_count

log = logging.getLogger(__name__)

COUNTERS = ("steps", "substeps", "clipped", "plastic", "guard", "apex")


def _setup(model: str, p0: float, params, options: dict):
    """(model spec, physics object, full params, full options) of a stress-point model name."""
    spec = registry.get(model)
    if spec.physics is None:
        raise ValueError(f"model {model} is not a stress-point model; allowed: "
                         f"{', '.join(n for n in registry.names() if registry.get(n).physics is not None)}")
    opts = spec.schema.check_options(options, where=f"{model} options")
    prm = spec.schema.check_params(params, where=f"{model} params", warn=False)
    if not p0 > 0:
        raise ValueError(f"p0 must be > 0 Pa (compression positive), got {p0}")
    return spec, spec.physics(**opts), prm, opts


def _aux(model: str, phys, prm: dict, opts: dict, p0: float, real) -> np.ndarray:
    a = np.zeros(N_AUX)
    a[A_DELTA] = opts["delta_r"]
    a[A_PMIN] = opts.get("p_min", 0.0) * phys.stress_scale
    a[A_QTOL] = 1e-12 if real == ti.f64 else 1e-6
    a[A_P0] = p0 * phys.stress_scale
    a[A_EPSREF] = opts["eps_ref"]
    a[A_LINEAR] = 1.0 if opts["substep_rule"] == "linear" else 0.0
    a[A_NSUB] = opts["n_sub"]
    a[A_TMAX] = opts["t_max"]
    a[A_M0], a[A_K0], a[A_DKDM] = phys.lode_constants(prm)
    return a


@ti.data_oriented
class _Common(NoReports):
    """Parameters, aux constants and the per-point constants vector, shared by both batches."""

    def _init_common(self, model, n_points, p0, params, options, needs_grad=False):
        self.model_name = model
        self.spec, self.phys, prm, self.options = _setup(model, p0, params, options)
        self.n_points = int(n_points)
        self.p0 = float(p0)
        self.real = runtime.real()
        self.np_real = runtime.np_real()
        self.param_names = self.phys.param_names
        self.n_par = len(self.param_names)
        self.scale = self.phys.stress_scale
        self.params = ti.field(self.real, shape=self.n_par, needs_grad=needs_grad)
        self.aux = ti.field(self.real, shape=N_AUX)
        self.set_params(prm)

    def set_params(self, params) -> None:
        """Set the parameters (dict by name, partial allowed, or array in ``param_names`` order)."""
        if not isinstance(params, dict):
            params = dict(zip(self.param_names, np.asarray(params, dtype=float).tolist()))
        base = getattr(self, "param_values", None) or {}
        prm = self.spec.schema.check_params({**base, **params}, warn=False)
        self.param_values = prm
        self.params.from_numpy(np.array([prm[k] for k in self.param_names], dtype=self.np_real))
        self.aux.from_numpy(_aux(self.model_name, self.phys, prm, self.options, self.p0,
                                 self.real).astype(self.np_real))

    def set_options(self, **options) -> None:
        """Change run-time options (``delta_r``, ``eps_ref``, ``substep_rule``, ``n_sub``, ``t_max``,
        ``p_min``) without recompiling; static ones (``lode``, ``lode_grad``, ``mcc_init``) cannot change."""
        static = {o.name for o in self.spec.schema.options if o.static} & set(options)
        if any(options[k] != self.options[k] for k in static):
            raise ValueError(f"options {', '.join(sorted(static))} are fixed at construction")
        self.options = self.spec.schema.check_options({**self.options, **options})
        self.set_params(self.param_values)

    @ti.func
    def _consts(self):
        P = ti.Vector([self.params[j] for j in ti.static(range(self.n_par))])
        A = ti.Vector([self.aux[j] for j in ti.static(range(N_AUX))])
        return self.phys.constants(P, A), A


@ti.data_oriented
class StressPointBatch(_Common):
    """``n_points`` constitutive points advanced by strain increments (the FEM's material).

    Parameters
    ----------
    model : ``csuh`` | ``mcc`` | ``ime``.
    n_points : number of points.
    p0 : initial isotropic mean pressure, Pa, compression positive (initial stress -p0 I).
    params : parameters by name (defaults: the paper's Original sets, ``materials.params``).
    **options : ``lode``, ``lode_grad``, ``delta_r``, ``substep_rule``, ``eps_ref``, ``t_max``,
        ``n_sub``, ``p_min`` (Pa), ``mcc_init`` — see the model's ``SCHEMA`` (``materials.csuh`` ...).
    """

    def __init__(self, model: str, n_points: int, p0: float, params: dict | None = None, **options):
        self._init_common(model, n_points, p0, params, options)
        self.state = ti.Vector.field(2, self.real, shape=self.n_points)
        self.wave = ti.field(self.real, shape=self.n_points)
        self.wave_max = ti.field(self.real, shape=())
        # per point, each written only by its own thread: no atomics (Vulkan has no 64-bit ones, and
        # one address per counter serialises a GPU); summed in int64 on the host by counts()
        self.counters = ti.field(ti.i32, shape=(self.n_points, len(COUNTERS)))
        self._diag = None
        self._init_state()

    # ------------------------------------------------------------------ kernels
    @ti.kernel
    def _init_state(self):
        for i in range(self.n_points):
            C, A = self._consts()
            st = self.phys.initial_state(C)
            self.state[i] = st
            self.wave[i] = self.phys.wave(C[3] * ti.Matrix.identity(float, 3), st, C)

    @ti.func
    def _advance(self, sig_t, deps, st, C, A):
        """One step for one point: tension-positive Pa in and out; returns counters too. A step
        that ends with a tensile mean stress returns the point to the apex, zero stress (the
        models are cohesionless: a granular material cannot carry tension; counter ``apex``)."""
        s = -self.scale * sig_t
        de = -0.5 * (deps + deps.transpose())
        T, clipped = substep_count(de, A[A_EPSREF], A[A_LINEAR], ti.cast(A[A_NSUB], ti.i32),
                                   ti.cast(A[A_TMAX], ti.i32))
        d = de / T
        npl, ngd = 0, 0
        for _ in range(T):
            s, st, pl, gd = substep(self.phys, s, st, d, C)
            npl += ti.cast(pl, ti.i32)
            ngd += ti.cast(gd, ti.i32)
        apex = 0
        if s.trace() < 0.0:
            s = ti.Matrix.zero(float, 3, 3)
            apex = 1
        return -s / self.scale, st, T, ti.cast(clipped, ti.i32), npl, ngd, apex

    @ti.kernel
    def _update(self, deps: ti.template(), stress: ti.template()):
        for i in range(self.n_points):
            C, A = self._consts()
            sig, st, T, cl, npl, ngd, apex = self._advance(stress[i], deps[i], self.state[i], C, A)
            stress[i] = sig
            self.state[i] = st
            self.wave[i] = self.phys.wave(-self.scale * sig, st, C)
            self._add_counts(i, 1, T, cl, npl, ngd, apex)

    @ti.kernel
    def _history(self, strain: ti.template(), out: ti.template(), n_steps: ti.i32):
        for i in range(self.n_points):
            C, A = self._consts()
            st = self.state[i]
            sig = -A[A_P0] / self.scale * ti.Matrix.identity(float, 3)
            eps_prev = ti.Matrix.zero(float, 3, 3)
            # counts summed in locals and added once: on lavapipe an atomic inside a thread's loop
            # cuts the loop short (kernels/dem_neighbors.py module doc); here after 2 of the steps
            n_sub, n_clip, n_pl, n_gd, n_apex = 0, 0, 0, 0, 0
            for t in range(n_steps):
                eps = strain[i, t]
                sig2, st2, T, cl, npl, ngd, apex = self._advance(sig, eps - eps_prev, st, C, A)
                sig, st, eps_prev = sig2, st2, eps
                out[i, t] = sig
                n_sub += T
                n_clip += cl
                n_pl += npl
                n_gd += ngd
                n_apex += apex
            self._add_counts(i, 0, n_sub, n_clip, n_pl, n_gd, n_apex)
            self.state[i] = st
            self.wave[i] = self.phys.wave(-self.scale * sig, st, C)

    @ti.func
    def _add_counts(self, i, steps, sub, clip, pl, gd, apex):
        """Add one point's events to its own row of the counters (no atomics: one writer per row)."""
        c = ti.Vector([steps, sub, clip, pl, gd, apex])
        for j in ti.static(range(len(COUNTERS))):
            self.counters[i, j] = self.counters[i, j] + c[j]

    @ti.kernel
    def _wave_max(self):
        self.wave_max[None] = 0.0
        for i in range(self.n_points):
            ti.atomic_max(self.wave_max[None], self.wave[i])

    @ti.kernel
    def _diagnose(self, stress: ti.template(), out: ti.template()):
        for i in range(self.n_points):
            C, A = self._consts()
            d = self.phys.diagnostics(-self.scale * stress[i], self.state[i], C)
            for j in ti.static(range(d.n)):
                out[i, j] = d[j]

    # ------------------------------------------------------------------ interface
    def update(self, deps, stress) -> None:
        """Advance every point by ``deps`` (3x3 field, tension positive); ``stress`` (Pa) in/out."""
        self._update(deps, stress)

    def initial_stress(self) -> np.ndarray:
        """(n_points, 3, 3) initial stress -p0 I, Pa, tension positive."""
        return np.broadcast_to(-self.p0 * np.eye(3), (self.n_points, 3, 3)).copy()

    def snapshot(self) -> dict:
        """All internal state as numpy arrays (for checkpoints and trial updates)."""
        st = self.state.to_numpy()
        out = {name: st[:, j].copy() for j, name in enumerate(self.phys.state_names)}
        out["wave"] = self.wave.to_numpy()
        out["counters"] = self.counters.to_numpy()
        return out

    def restore(self, d: dict) -> None:
        """Inverse of :meth:`snapshot`."""
        names = self.phys.state_names
        st = np.stack([np.asarray(d[n], dtype=self.np_real) for n in names], axis=1)
        if st.shape != (self.n_points, 2):
            raise ValueError(f"restore: state arrays must have length {self.n_points}")
        self.state.from_numpy(st)
        if "wave" in d:
            self.wave.from_numpy(np.asarray(d["wave"], dtype=self.np_real))
        if "counters" in d:
            self.counters.from_numpy(_counter_rows(d["counters"], self.n_points))

    def wave_modulus(self) -> float:
        """max over points of the current constrained modulus K + 4G/3 (Pa).

        Hypoelastic models stiffen with p: the FEM's time-step safety factor must cover the growth
        within one step (small for explicit steps).
        """
        self._wave_max()
        return float(self.wave_max[None]) / self.scale

    def check(self, step: int) -> str:
        """Stress-point models have no failure of their own beyond non-finite stress (the FEM checks)."""
        return ""

    def counts(self) -> dict:
        """Event counters: steps, substeps, clipped (T hit t_max), plastic sub-steps, guard events, apex returns (tensile mean stress set to zero)."""
        return dict(zip(COUNTERS, self.counters.to_numpy().astype(np.int64).sum(axis=0).tolist()))

    def diagnostics(self, stress: np.ndarray) -> dict:
        """Model diagnostics at the given stresses (Pa, tension +) and current state, in Pa where
        dimensional (p, q compression positive). CSUH: p, q, f, xi, R, Mf, Mc, Mtheta, q_tilde."""
        names = self.spec.diagnostics
        if self._diag is None:
            self._diag = (ti.Matrix.field(3, 3, self.real, shape=self.n_points),
                          ti.field(self.real, shape=(self.n_points, len(names))))
        self._diag[0].from_numpy(np.asarray(stress, dtype=self.np_real).reshape(self.n_points, 3, 3))
        self._diagnose(*self._diag)
        d = self._diag[1].to_numpy().astype(float)
        out = {n: d[:, j] for j, n in enumerate(names)}
        for n in self.spec.stress_diagnostics:             # stresses back to Pa (IME: already Pa)
            if n in out:
                out[n] = out[n] / self.scale
        return out

    def run_history(self, strain: np.ndarray) -> np.ndarray:
        """Stresses (n_points, n_steps, 3, 3) along total-strain histories of the same shape,
        from the isotropic state -p0 I and the initial internal state (forward only)."""
        strain = np.asarray(strain, dtype=self.np_real)
        n_steps = strain.shape[1]
        sf = ti.Matrix.field(3, 3, self.real, shape=(self.n_points, n_steps))
        of = ti.Matrix.field(3, 3, self.real, shape=(self.n_points, n_steps))
        sf.from_numpy(strain)
        self._init_state()
        self._history(sf, of, n_steps)
        return of.to_numpy().astype(float)


@ti.data_oriented
class StressPathBatch(_Common):
    """Differentiable stresses along prescribed total-strain histories.

    ``strain`` (n_points, n_steps, 3, 3), tension positive, total strain after each step from
    eps = 0 at -p0 I. After :meth:`forward`, ``sig_hist[i, t + 1]`` is the stress after step t (Pa,
    tension positive) and ``st_hist`` the internal state. With ``needs_grad`` the parameter field
    ``params`` (order ``param_names``) receives gradients of any scalar loss computed from
    ``sig_hist`` inside ``ti.ad.Tape`` (see :meth:`gradient`).

    Histories of different lengths (the calibration bridge's refined paths, ``calibrate.bridge``):
    :meth:`load_paths` gives each point its own number of steps ``live[i]`` (<= ``n_steps``; the
    step kernel leaves a point alone from its step ``live[i]`` on, and :meth:`forward` launches only
    as many steps as the longest loaded point has) and ``n_out`` reported steps per point,
    ``ends[i, r]`` being the step after which its r-th reported stress is taken. The weights of
    :meth:`gradient` and the stresses of :meth:`reported` are per reported step. By default every
    point has all ``n_steps`` steps and each step is reported (``n_out = n_steps``, ``ends[i, r] = r``).
    Arrays in and out may be numpy arrays or torch tensors: the kernels read and write them in
    place (external arrays), on the CPU backend in host memory, on CUDA in device memory when the
    tensor is a CUDA tensor; the GPU backends without shared memory with torch (Vulkan) copy
    through the host inside the launch.
    """

    def __init__(self, model: str, n_points: int, n_steps: int, p0: float, params: dict | None = None,
                 needs_grad: bool = True, n_out: int | None = None, **options):
        self._init_common(model, n_points, p0, params, options, needs_grad=needs_grad)
        self.n_steps = int(n_steps)
        self.n_out = self.n_steps if n_out is None else int(n_out)
        shape = (self.n_points, self.n_steps + 1)
        self.strain = ti.Matrix.field(3, 3, self.real, shape=shape)
        self.nsub = ti.field(ti.i32, shape=(self.n_points, self.n_steps))
        self.live = ti.field(ti.i32, shape=self.n_points)                   # steps of each point's history
        self.ends = ti.field(ti.i32, shape=(self.n_points, max(self.n_out, 1)))  # step of each reported stress
        self.nb_max = ti.field(ti.i32, shape=())
        self.sig_hist = ti.Matrix.field(3, 3, self.real, shape=shape, needs_grad=needs_grad)
        self.st_hist = ti.Vector.field(2, self.real, shape=shape, needs_grad=needs_grad)
        self.loss = ti.field(self.real, shape=(), needs_grad=needs_grad)
        self.nb = 1
        self.n_run = self.n_steps          # steps :meth:`forward` launches (the longest loaded history)
        self._w = None
        self.live.fill(self.n_steps)
        self._identity_ends()

    @ti.kernel
    def _identity_ends(self):
        for i, r in self.ends:
            self.ends[i, r] = ti.min(r, ti.max(self.n_steps - 1, 0))

    @ti.kernel
    def _count(self, m: ti.i32):
        self.nb_max[None] = 1
        for i, t in ti.ndrange(self.n_points, m):
            T = 1
            if t < self.live[i]:
                A = ti.Vector([self.aux[j] for j in ti.static(range(N_AUX))])
                de = self.strain[i, t + 1] - self.strain[i, t]
                T1, cl = substep_count(de, A[A_EPSREF], A[A_LINEAR], ti.cast(A[A_NSUB], ti.i32),
                                       ti.cast(A[A_TMAX], ti.i32))
                T = T1
            self.nsub[i, t] = T
            ti.atomic_max(self.nb_max[None], T)

    @ti.kernel
    def _load_paths(self, src: ti.types.ndarray(), n: ti.i32, m: ti.i32):
        for i, s in ti.ndrange(self.n_points, m + 1):
            e = ti.Matrix.zero(self.real, 3, 3)
            if i < n and s > 0:
                for a, b in ti.static(ti.ndrange(3, 3)):
                    e[a, b] = src[i, s - 1, a, b]
            self.strain[i, s] = e

    @ti.kernel
    def _load_live(self, lengths: ti.types.ndarray(), n: ti.i32):
        for i in range(self.n_points):
            L = 0                                   # padding rows of a short block: no steps at all
            if i < n:
                L = lengths[i]
            self.live[i] = L

    @ti.kernel
    def _load_ends(self, ends: ti.types.ndarray(), n: ti.i32):
        for i, r in self.ends:
            k = 0
            if i < n:
                k = ends[i, r]
            self.ends[i, r] = k

    def load_strain(self, strain: np.ndarray) -> int:
        """Set the strain histories; returns the static sub-step bound ``nb`` of the data."""
        strain = np.asarray(strain, dtype=float)
        if strain.shape != (self.n_points, self.n_steps, 3, 3):
            raise ValueError(f"strain must have shape {(self.n_points, self.n_steps, 3, 3)}, got {strain.shape}")
        return self.load_paths(0.5 * (strain + np.swapaxes(strain, 2, 3)))

    def load_paths(self, strain, lengths=None, ends=None) -> int:
        """Set symmetric strain histories of ``n <= n_points`` points (numpy array or torch tensor
        (n, m, 3, 3), m <= n_steps, tension positive, total strain after each step), each point's
        number of steps ``lengths`` (n,) (default m; entries past it are not read) and the steps
        ``ends`` (n, n_out) after which its stresses are reported (default: every step). Rows past n
        get no steps. Returns the static sub-step bound ``nb`` of the data."""
        n, m = int(strain.shape[0]), int(strain.shape[1])
        if n > self.n_points or m > self.n_steps or tuple(strain.shape[2:]) != (3, 3):
            raise ValueError(f"strain must have shape (<= {self.n_points}, <= {self.n_steps}, 3, 3), "
                             f"got {tuple(strain.shape)}")
        self._load_paths(_real_array(strain, self.np_real), n, m)
        if lengths is None:
            lengths = np.full(n, m, dtype=np.int32)
        self._load_live(_int_array(lengths), n)
        if ends is None:
            self._identity_ends()
        else:
            self._load_ends(_int_array(ends), n)
        self.n_run = m
        self._count(m)
        self.nb = int(self.nb_max[None])
        if self.nb > 16:
            log.warning("StressPathBatch: %d sub-steps in one step are unrolled in the differentiable "
                        "kernel (slow to compile); raise eps_ref or use substep_rule='linear'", self.nb)
        return self.nb

    @ti.kernel
    def _init_path(self):
        for i in range(self.n_points):
            C, A = self._consts()
            self.sig_hist[i, 0] = -A[A_P0] / self.scale * ti.Matrix.identity(float, 3)
            self.st_hist[i, 0] = self.phys.initial_state(C)

    @ti.kernel
    def _step(self, t: ti.i32, nb: ti.template()):
        for i in range(self.n_points):
            if t < self.live[i]:                                        # past its own history: left alone
                C, A = self._consts()
                de = self.strain[i, t] - self.strain[i, t + 1]          # compression positive
                T = self.nsub[i, t]
                d = de / T
                s = -self.scale * self.sig_hist[i, t]
                st = self.st_hist[i, t]
                for k in ti.static(range(nb)):
                    s1, st1, pl, gd = substep(self.phys, s, st, d, C)
                    if ti.static(nb == 1):
                        s, st = s1, st1
                    else:
                        s = ti.select(k < T, s1, s)
                        st = ti.select(k < T, st1, st)
                self.sig_hist[i, t + 1] = -s / self.scale
                self.st_hist[i, t + 1] = st

    def forward(self) -> None:
        """Run the loaded histories (call inside ``ti.ad.Tape`` for gradients): one launch per step of
        the longest."""
        self._init_path()
        for t in range(self.n_run):
            self._step(t, self.nb)

    def stresses(self) -> np.ndarray:
        """(n_points, n_steps, 3, 3) stresses after each step, Pa, tension positive."""
        return self.sig_hist.to_numpy()[:, 1:].astype(float)

    @ti.kernel
    def _gather(self, out: ti.types.ndarray(), n: ti.i32):
        for i, r in ti.ndrange(n, self.n_out):
            sig = self.sig_hist[i, self.ends[i, r] + 1]
            for a, b in ti.static(ti.ndrange(3, 3)):
                out[i, r, a, b] = sig[a, b]

    def reported(self, n: int | None = None, out=None):
        """Stresses of the first ``n`` points (default all) after their reported steps, Pa, tension
        positive: written into ``out`` (numpy array or torch tensor (n, n_out, 3, 3) of the runtime's
        real type) and returned; without ``out``, a new float64 numpy array."""
        n = self.n_points if n is None else int(n)
        if out is None:
            buf = np.empty((n, self.n_out, 3, 3), dtype=self.np_real)
            self._gather(buf, n)
            return buf.astype(float)
        self._gather(out, n)
        return out

    def states(self) -> dict:
        st = self.st_hist.to_numpy()[:, 1:]
        return {n: st[..., j].astype(float) for j, n in enumerate(self.phys.state_names)}

    @ti.kernel
    def _weighted_loss(self, w: ti.template()):
        for i, r in w:
            self.loss[None] += (w[i, r] * self.sig_hist[i, self.ends[i, r] + 1]).sum()

    @ti.kernel
    def _load_weights(self, src: ti.types.ndarray(), n: ti.i32):
        for i, r in self._w:
            v = ti.Matrix.zero(self.real, 3, 3)
            if i < n:
                for a, b in ti.static(ti.ndrange(3, 3)):
                    v[a, b] = src[i, r, a, b]
            self._w[i, r] = v

    def _set_weights(self, weights) -> None:
        if self._w is None:
            self._w = ti.Matrix.field(3, 3, self.real, shape=(self.n_points, self.n_out))
        n = int(weights.shape[0])
        if n > self.n_points or tuple(weights.shape[1:]) != (self.n_out, 3, 3):
            raise ValueError(f"weights must have shape (<= {self.n_points}, {self.n_out}, 3, 3), "
                             f"got {tuple(weights.shape)}")
        self._load_weights(_real_array(weights, self.np_real), n)

    def gradient(self, weights, recompute: bool = True) -> tuple[float, np.ndarray]:
        """Loss = sum(weights * stress) (weights (n_points, n_out, 3, 3) per reported stress, per Pa;
        numpy or torch, fewer rows allowed: the others weigh zero) and its gradient with respect to
        the parameters (``param_names`` order), by Taichi reverse-mode autodiff.

        ``recompute=False`` reuses the history of the last :meth:`forward` (same strain and
        parameters, which the caller guarantees) instead of running it again.
        """
        self._set_weights(weights)
        self.loss[None] = 0.0
        if recompute:
            self.forward()
        self._weighted_loss(self._w)
        self._reverse()
        return float(self.loss[None]), self.params.grad.to_numpy().astype(float)

    def _reverse(self) -> None:
        """The reverse sweep ``ti.ad.Tape`` would replay for ``forward(); _weighted_loss()``: the
        kernels' adjoints in reverse launch order, reading the stored history."""
        for f in (self.sig_hist, self.st_hist, self.params):
            f.grad.fill(0.0)
        self.loss.grad[None] = 1.0
        self._weighted_loss.grad(self._w)
        for t in reversed(range(self.n_run)):
            self._step.grad(t, self.nb)
        self._init_path.grad()

    def weighted_loss(self, weights: np.ndarray) -> float:
        """The loss of :meth:`gradient` without gradients (for finite differences)."""
        self._set_weights(weights)
        self.loss[None] = 0.0
        self.forward()
        self._weighted_loss(self._w)
        return float(self.loss[None])


def _real_array(x, np_real):
    """``x`` (numpy array or torch tensor) as a contiguous array of the runtime's real type, on the
    device it is on (no copy when it already is one)."""
    if isinstance(x, np.ndarray) or not hasattr(x, "contiguous"):
        return np.ascontiguousarray(x, dtype=np_real)
    import torch

    return x.to(dtype=torch.float64 if np_real == np.float64 else torch.float32).contiguous()


def _int_array(x):
    """``x`` as a contiguous int32 array (numpy) or tensor (torch, on its device)."""
    if isinstance(x, np.ndarray) or not hasattr(x, "contiguous"):
        return np.ascontiguousarray(x, dtype=np.int32)
    import torch

    return x.to(dtype=torch.int32).contiguous()


def finite_difference_gradient(path: "StressPathBatch", weights: np.ndarray, rel_step: float = 1e-6) -> np.ndarray:
    """Central finite differences of :meth:`StressPathBatch.weighted_loss` for every parameter
    (step ``rel_step * |value|``), for checking the autodiff gradient."""
    base = dict(path.param_values)
    out = []
    for name in path.param_names:
        h = rel_step * max(abs(base[name]), 1e-12)
        path.set_params({**base, name: base[name] + h})
        a = path.weighted_loss(weights)
        path.set_params({**base, name: base[name] - h})
        b = path.weighted_loss(weights)
        out.append((a - b) / (2.0 * h))
    path.set_params(base)
    return np.array(out)


def random_strain_paths(n_points: int, n_steps: int, amplitude: float, seed: int = 0) -> np.ndarray:
    """Random total-strain histories (tension +, (n_points, n_steps, 3, 3)) for checks: axial (z)
    compression with random deviatoric/shear parts, then unloading (from half-way) and reloading
    (from three quarters); ``amplitude`` is the axial strain per step."""
    rng = np.random.default_rng(seed)
    inc = rng.normal(size=(n_points, n_steps, 3, 3)) * 0.25 * amplitude
    inc = 0.5 * (inc + np.swapaxes(inc, 2, 3))
    k = np.arange(n_steps)
    sign = np.where(k < n_steps // 2, 1.0, np.where(k < 3 * n_steps // 4, -1.0, 1.0))
    inc[:, :, 2, 2] -= amplitude * sign[None, :]
    inc[:, :, 0, 0] += 0.3 * amplitude * sign[None, :]
    return np.cumsum(inc, axis=1)


def gradient_check(model: str, strain: np.ndarray, p0: float = 100e3, deltas=(0.03, 0.0), seed: int = 0,
                   **options) -> tuple["StressPathBatch", list]:
    """Autodiff vs central finite differences of a random linear functional of the stresses along
    ``strain``, for each soft-gate width in ``deltas``. Returns the path batch and a list of
    ``(delta_r, ad_gradient, fd_gradient)`` (``param_names`` order). Use float64."""
    n, T = strain.shape[:2]
    path = StressPathBatch(model, n, T, p0, **options)
    path.load_strain(strain)
    w = np.random.default_rng(seed).normal(size=(n, T, 3, 3)) / (p0 * n * T)
    out = []
    for delta in deltas:
        path.set_options(delta_r=delta)
        _, g = path.gradient(w)
        out.append((delta, g, finite_difference_gradient(path, w)))
    return path, out


def build_batch(config, request) -> StressPointBatch:
    """The registry's builder of the stress-point models (``kernels.registry``)."""
    return StressPointBatch(config.model, request.n_points, request.p0, config.params, **config.options)


def replay(strain_histories: np.ndarray, p0: float, model: str, params: dict | None = None,
           options: dict | None = None) -> np.ndarray:
    """Stresses (Pa, tension +) along total-strain histories (n_points, n_steps, 3, 3), tension +,
    from -p0 I. Forward only; requires an initialised runtime."""
    strain = np.asarray(strain_histories, dtype=float)
    if strain.ndim != 4 or strain.shape[2:] != (3, 3):
        raise ValueError(f"strain histories must have shape (n_points, n_steps, 3, 3), got {strain.shape}")
    batch = registry.point_batch(model, strain.shape[0], p0, params, options)
    if isinstance(batch, StressPointBatch):
        return batch.run_history(strain)
    return _replay_stepwise(batch, strain)


def _replay_stepwise(batch, strain: np.ndarray) -> np.ndarray:
    n, T = strain.shape[:2]
    real = runtime.real()
    deps = ti.Matrix.field(3, 3, real, shape=n)
    stress = ti.Matrix.field(3, 3, real, shape=n)
    stress.from_numpy(batch.initial_stress().astype(runtime.np_real()))
    out = np.empty_like(strain)
    prev = np.zeros((n, 3, 3))
    for t in range(T):
        deps.from_numpy((strain[:, t] - prev).astype(runtime.np_real()))
        batch.update(deps, stress)
        out[:, t] = stress.to_numpy()
        prev = strain[:, t]
    return out


def _counter_rows(counters, n_points: int) -> np.ndarray:
    """Per-point event counters (n_points, len(COUNTERS)) int32 from a snapshot's ``counters``:
    per-point rows, or (older checkpoints) the totals alone, spread over the rows (same sums)."""
    c = np.asarray(counters, dtype=np.int64)
    if c.shape == (len(COUNTERS),):
        rows = np.repeat((c // n_points)[None], n_points, axis=0)
        rows[0] += c % n_points
        c = rows
    if c.shape != (n_points, len(COUNTERS)):
        raise ValueError(f"restore: counters must have shape {(n_points, len(COUNTERS))}, got {c.shape}")
    if c.min(initial=0) < 0 or c.max(initial=0) > np.iinfo(np.int32).max:
        raise ValueError("restore: counters must be non-negative counts of at most 2**31 - 1 per point")
    return c.astype(np.int32)
