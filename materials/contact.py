"""YADE's linear elastic-frictional contact law and local damping as pure Taichi functions.

Mirrors, term by term,

- ``Ip2_FrictMat_FrictMat_FrictPhys``: ``kn = 2 E1 R1 E2 R2 / (E1 R1 + E2 R2)``,
  ``ks = 2 E1 R1 v1 E2 R2 v2 / (E1 R1 v1 + E2 R2 v2)`` where ``v`` is YADE's ``poisson``
  (the ks/kn ratio, not Poisson's ratio); friction angle ``min(phi1, phi2)``.
- ``Ig2_Sphere_Sphere_ScGeom`` (``avoidGranularRatcheting=True``, the default):
  relative velocity ``alpha (v2 - v1 + shiftVel) - r2 w2 x n - r1 w1 x n`` with
  ``alpha = (r1 + r2) / (r1 + r2 - un)``; shear force rotated with the contact
  (``Fs -= Fs x (n_old x n)``, then the twist ``Fs -= Fs x (dt/2 (n_old . (w1 + w2)) n_old)``).
- ``Law2_ScGeom_FrictPhys_CundallStrack``: ``Fn = kn un n``, ``Fs -= ks du_t``,
  ``|Fs| <= |Fn| tan(phi)``; force on body 1 is ``-(Fn + Fs)``, torque on body ``k`` is
  ``(r_k - un/2) n x (force on body 1)``.
- ``NewtonIntegrator.cundallDamp2nd``: ``a_i *= 1 - damping sign(a_i (v_i + dt a_i / 2))`` with the
  fluctuation velocity in periodic cells.

In 2D (disks in the xy plane) rotations are scalars about z. ``cross_wn`` and ``cross_nf`` hide
the difference. No fields, no state.
"""
import taichi as ti


def normal_stiffness(E1: float, r1: float, E2: float, r2: float) -> float:
    """YADE's FrictPhys normal stiffness (N/m) for radii ``r1, r2`` (m) and Young's moduli (Pa)."""
    return 2.0 * E1 * r1 * E2 * r2 / (E1 * r1 + E2 * r2)


@ti.func
def kn_ks(young, ratio, r1, r2):
    """Normal and shear stiffness (N/m) of a contact between equal materials."""
    kn = 2.0 * young * r1 * r2 / (r1 + r2)
    return kn, kn * ratio


@ti.func
def cross_wn(w, n):
    """``w x n`` for an angular velocity ``w`` (1-vector in 2D, 3-vector in 3D) and vector ``n``."""
    if ti.static(n.n == 2):
        return ti.Vector([-w[0] * n[1], w[0] * n[0]])
    else:
        return w.cross(n)


@ti.func
def cross_nf(n, f):
    """Moment ``n x f`` as a rotation vector (1-vector in 2D, 3-vector in 3D)."""
    if ti.static(n.n == 2):
        return ti.Vector([n[0] * f[1] - n[1] * f[0]])
    else:
        return n.cross(f)


@ti.func
def rotate_shear(fs, n_old, n_new, w1, w2, dt):
    """Rotate the shear force with the contact frame as YADE's ``ScGeom::rotate``."""
    res = fs
    if ti.static(fs.n == 2):
        c = n_old[0] * n_new[1] - n_old[1] * n_new[0]  # z of n_old x n_new
        # fs x (0, 0, c) = (fs_y c, -fs_x c)
        res = ti.Vector([fs[0] - fs[1] * c, fs[1] + fs[0] * c])
    else:
        orth = n_old.cross(n_new)
        res = fs - fs.cross(orth)
        twist = (0.5 * dt * n_old.dot(w1 + w2)) * n_old
        res = res - res.cross(twist)
    return res


@ti.func
def shear_increment(dv, w1, w2, n, r1, r2, un, dt):
    """Tangential relative displacement increment (m) of body 2 w.r.t. body 1.

    ``dv`` is ``v2 - v1 + shiftVel`` (total velocities, periodic image included).
    """
    alpha = (r1 + r2) / (r1 + r2 - un)
    rel = alpha * dv + cross_wn(w2, -r2 * n) - cross_wn(w1, r1 * n)
    rel = rel - n.dot(rel) * n
    return rel * dt


@ti.func
def coulomb(fs, fn, tan_phi):
    """Project the shear force ``fs`` on the Coulomb cone ``|fs| <= fn tan_phi`` (fn >= 0)."""
    res = fs
    max2 = fn * fn * tan_phi * tan_phi
    f2 = fs.dot(fs)
    if f2 > max2:
        res = fs * (ti.sqrt(max2) / ti.sqrt(f2))
    return res


@ti.func
def sign(x):
    """YADE's Mathr::Sign: -1, 0 or 1."""
    return ti.select(x > 0, 1.0, ti.select(x < 0, -1.0, 0.0))


@ti.func
def cundall_damp(acc, vel, damping, dt):
    """YADE's local non-viscous damping (``cundallDamp2nd``), component by component."""
    res = acc
    for d in ti.static(range(acc.n)):
        res[d] = acc[d] * (1.0 - damping * sign(acc[d] * (vel[d] + 0.5 * dt * acc[d])))
    return res
