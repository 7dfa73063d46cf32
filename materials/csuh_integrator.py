"""The soft-gated explicit stress-point integrator (spec §5, paper Algorithm 2), shared by CSUH,
MCC and IME, plus the tensor helpers they use.

Everything here works on *compression-positive* tensors in the model's internal units
(kPa for CSUH/MCC, Pa for IME). A model object supplies, as ``@ti.func`` methods:

``elastic(sig, st, C) -> (K, G)``, ``yield_value(sig, st, C) -> f``,
``volume_update(st, dev, frac) -> st`` (state change of an elastic fraction of the sub-increment),
``flow(sig, st, C) -> (n_f, n_g, hard, dst)`` with ``hard`` the hardening term of the
consistency denominator and ``dst`` the state change per unit ``d lambda``.

``C`` is the model's constants vector; its first entries are common:
``C[0] = delta_r``, ``C[1] = p_min``, ``C[2] = q_tol``, ``C[3] = p0`` (internal units).

Autodiff rules (Taichi 1.7.4): every branch is a ``ti.select`` and every expression is finite on
both sides of each select (safe denominators), so masked-out branches never inject NaN into the
reverse pass.
"""
import taichi as ti

TINY_Q2 = 1e-36     # added to 3/2 s:s before the square root (q = 0 at the isotropic start)
Q_FLOOR = 1e-18     # floor of q when normalising the deviator

I_DELTA, I_PMIN, I_QTOL, I_P0 = 0, 1, 2, 3


@ti.func
def eye3():
    return ti.Matrix.identity(float, 3)


@ti.func
def ddot(a, b):
    return (a * b).sum()


@ti.func
def dmap(K, G, x):
    """Isotropic elastic map D:x = K tr(x) I + 2G dev(x)."""
    tr = x.trace()
    return (K - 2.0 * G / 3.0) * tr * eye3() + 2.0 * G * x


@ti.func
def invariants(sig, qtol):
    """p, q, s, s/q, omega = sin 3 theta, has_q of a compression-positive stress (spec §1).

    ``has_q`` is the "q != 0" flag ``q > q_tol (|p| + 1)``; where it is false omega = 0.
    """
    p = sig.trace() / 3.0
    s = sig - p * eye3()
    q = ti.sqrt(1.5 * ddot(s, s) + TINY_Q2)
    has_q = q > qtol * (ti.abs(p) + 1.0)
    sh = s / ti.max(q, Q_FLOOR)
    om = ti.min(ti.max(13.5 * sh.determinant(), -1.0), 1.0)
    om = ti.select(has_q, om, 0.0)
    return p, q, s, sh, om, has_q


@ti.func
def unit_nq(sh, has_q):
    """dq/dsigma = 3/2 s/q (zero where q = 0)."""
    return ti.select(has_q, 1.5, 0.0) * sh


@ti.func
def q_domega(sh, om, has_q):
    """q * d omega / d sigma = 27/2 (s.s/q^2 - 2/9 I - omega/3 s/q) (bounded; zero where q = 0)."""
    return ti.select(has_q, 13.5, 0.0) * (sh @ sh - 2.0 / 9.0 * eye3() - om / 3.0 * sh)


@ti.func
def smooth_gate(u, delta):
    """Cubic Hermite edge rounding S_delta (Eq. 40); identity for delta = 0."""
    d = ti.max(delta, 1e-6)
    w = 1.0 - u
    lo = 2.0 * u * u / d - u * u * u / (d * d)
    hi = 1.0 - (2.0 * w * w / d - w * w * w / (d * d))
    s = ti.select(u <= d, lo, ti.select(u >= 1.0 - d, hi, u))
    return ti.select(delta > 0.0, s, u)


@ti.func
def elastic_fraction(f_st, f_tr, delta):
    """r_mid of Eq. 41 with [A9]: 1 if f_tr <= 0, S(f_st/(f_st - f_tr)) when crossing, else 0."""
    crossing = (f_st < 0.0) & (f_tr > 0.0)
    u = f_st / ti.select(crossing, f_st - f_tr, -1.0)
    u = ti.min(ti.max(u, 0.0), 1.0)
    return ti.select(f_tr <= 0.0, 1.0, ti.select(crossing, smooth_gate(u, delta), 0.0))


@ti.func
def substep(model: ti.template(), sig, st, de, C):
    """One sub-increment (spec §5.3). Returns (sig, st, plastic flag, denominator-guard flag)."""
    K, G = model.elastic(sig, st, C)
    dse = dmap(K, G, de)
    f_st = model.yield_value(sig, st, C)
    f_tr = model.yield_value(sig + dse, st, C)
    r = elastic_fraction(f_st, f_tr, C[I_DELTA])
    dev = de.trace()
    sig_m = sig + r * dse
    st_m = model.volume_update(st, dev, r)
    Km, Gm = model.elastic(sig_m, st_m, C)
    nf, ng, hard, dst = model.flow(sig_m, st_m, C)
    de_pl = (1.0 - r) * de
    nfd = dmap(Km, Gm, nf)
    ndn = ddot(nfd, ng)
    den = ndn + hard
    floor = 1e-9 * ti.abs(ndn)
    guard = den <= floor
    den = ti.max(den, floor + 1e-30)
    dlam = ti.max(0.0, ddot(nfd, de_pl) / den)
    # Past a limit point (guard) the multiplier is unbounded: the plastic strain may take at most
    # the whole remaining increment, |dlam n_g| <= |de_pl| (the spec's floor alone gave 1e9-fold).
    most = ti.sqrt(ddot(de_pl, de_pl) + 1e-30) / ti.sqrt(ddot(ng, ng) + 1e-30)
    dlam = ti.select(guard, ti.min(dlam, most), dlam)
    sig_new = sig_m + dmap(Km, Gm, de_pl - dlam * ng)
    st_new = model.volume_update(st_m, dev, 1.0 - r) + dlam * dst
    return sig_new, st_new, dlam > 0.0, guard & (dlam > 0.0)


@ti.func
def substep_count(de, eps_ref, linear, n_sub, t_max):
    """Number of sub-increments T of Eq. 16 ([A8]); ``n_sub > 0`` fixes it. Returns (T, clipped)."""
    nrm2 = ddot(de, de)
    x = ti.select(linear > 0, ti.sqrt(nrm2) / eps_ref, nrm2 / (eps_ref * eps_ref))
    x = ti.min(x, 1e9)
    T = ti.max(1, ti.cast(ti.ceil(x), ti.i32))
    clipped = T > t_max
    T = ti.min(T, t_max)
    T = ti.select(n_sub > 0, n_sub, T)
    clipped = clipped & (n_sub <= 0)
    return T, clipped


@ti.func
def camclay_moduli(sig, e, kappa, nu, p_min):
    """Bulk and shear moduli of Cam-clay hypoelasticity (CSUH and MCC, spec section 3), kPa:
    K = (1 + e) max(p, p_min) / kappa, G = 3 K (1 - 2 nu) / (2 (1 + nu)); ``sig`` compression positive."""
    ph = ti.max(sig.trace() / 3.0, p_min)
    K = (1.0 + e) * ph / kappa
    G = 1.5 * K * (1.0 - 2.0 * nu) / (1.0 + nu)
    return K, G
