"""Contact law and integrator on one or two particles (YADE semantics, closed forms)."""
import math

import numpy as np
import pytest

from helpers import fresh_runtime


def _cells(dim, h, x, r, **kw):
    from kernels.periodic_cell import PeriodicCells

    n = len(r)
    cells = PeriodicCells(1, n, dim)
    args = dict(density=2650.0, young=600e6, ratio=0.5, tan_phi=0.5, damping=0.0, thickness=0.1)
    args.update(kw)
    cells.load(np.asarray(h)[None], np.asarray(x)[None], np.asarray(r)[None], [n], **args)
    return cells


def test_two_spheres_match_yade_reference(ti_runtime):
    """tests/verification/yade/two_spheres.py: shear force, normal force, spin after 3 steps."""
    cells = _cells(3, np.eye(3), [[0.5, 0.5, 0.5], [0.5, 0.5155, 0.5]], [0.01, 0.006])
    cells.dt.fill(1e-7)
    cells.omega.from_numpy(np.array([[[0, 0, 10.0], [0, 0, 3.0]]]))
    cells.w.from_numpy(np.array([[[0, 0, 0], [0.2, 0, 0]]]))
    cells.step(3)
    ca = cells.contact_arrays(0)
    np.testing.assert_allclose(ca["fs"][0], [-0.21899311778667072, 5.651215665807345e-07, 0.0],
                               rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(ca["fn"][0] * ca["normal"][0], [0.005805828426088039, 2249.8459509592467, 0],
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cells.omega.to_numpy()[0, 0], [0, 0, 9.999038211044047], rtol=1e-12)
    np.testing.assert_allclose(cells.w.to_numpy()[0, 1], [0.19998209564887803, 0.28151550726140656, 0],
                               rtol=1e-9)


@pytest.mark.parametrize("dim", [2, 3])
def test_normal_force_and_elastic_rebound_across_the_boundary(ti_runtime, request, dim):
    """Head-on collision through the periodic boundary: kn = 2E r1 r2/(r1+r2), speed restored."""
    side = 0.1
    r1, r2 = 0.005, 0.004
    x = np.full((2, dim), side / 2)
    x[0, 0], x[1, 0] = 0.001, side - 0.0075  # distance 0.0085 through the boundary: overlap 0.5 mm
    cells = _cells(dim, np.eye(dim) * side, x, [r1, r2])
    kn = 2 * 600e6 * r1 * r2 / (r1 + r2)
    cells.measure()
    ca = cells.contact_arrays(0)
    assert len(ca["fn"]) == 1 and list(ca["k"][0][:1]) in ([-1], [1])
    np.testing.assert_allclose(ca["fn"][0], kn * 0.0005, rtol=1e-9)
    # now approach at 0.1 m/s without initial overlap, no damping: elastic rebound (cells built
    # first in a runtime of their own: kernels from the cache, see helpers.fresh_runtime)
    x[1, 0] = side - 0.00805  # gap 0.05 mm
    fresh_runtime(request)
    cells = _cells(dim, np.eye(dim) * side, x, [r1, r2])
    v = np.zeros((1, 2, dim))
    v[0, 0, 0], v[0, 1, 0] = -0.05, 0.05
    cells.w.from_numpy(v)
    m = cells.mass.to_numpy()[0]
    p0 = (m[:, None] * v[0]).sum(axis=0)
    cells.step(400)
    w = cells.w.to_numpy()[0]
    np.testing.assert_allclose((m[:, None] * w).sum(axis=0), p0, atol=1e-12)
    rel = w[1, 0] - w[0, 0]
    assert rel < 0  # bounced
    np.testing.assert_allclose(abs(rel), 0.1, rtol=0.02)  # leapfrog onset error, O(dt / t_contact)


def test_coulomb_limit(ti_runtime):
    """A sphere thrown tangentially slides at |fs| = tan(phi) fn."""
    cells = _cells(3, np.eye(3) * 0.1, [[0.05, 0.05, 0.05], [0.05, 0.0595, 0.05]], [0.005, 0.005],
                   tan_phi=math.tan(0.3), damping=0.5)
    v = np.zeros((1, 2, 3))
    v[0, 1, 0] = 100.0
    cells.w.from_numpy(v)
    cells.step(2)
    ca = cells.contact_arrays(0)
    np.testing.assert_allclose(np.linalg.norm(ca["fs"][0]), math.tan(0.3) * ca["fn"][0], rtol=1e-9)
