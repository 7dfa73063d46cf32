"""Explicit small-strain FEM: central differences, lumped mass, batched element loops.

Elements: 3-node triangles with one Gauss point (2D, forces per unit thickness times
``thickness``) and 8-node hexahedra with 2x2x2 Gauss points (3D), VTK node order.
Stresses and strains are full 3x3 tensors, tension positive, Pa; in 2D the in-plane block
drives the mesh and the zz components are whatever the material says (plane strain: the
material sees eps_zz = 0).

One step (``ExplicitFEM.step``), in this order (paper Algorithm 1, Eqs. 2-4):
  1. f_int = sum over Gauss points of B^T sigma w            (w = weight x det J x thickness)
  2. f = f_ext - f_int, damping force, a = f / m, v += dt a    (v lives at half steps)
  3. prescribed velocity components overwrite v; du = dt v; u += du
  3b. (``updated=True`` only) B and w recomputed on the current coordinates X + u
  4. deps = sym(grad du) at every Gauss point
  5. material.update(deps, stress); strain += deps
With ``updated=False`` (small deformations) B and w stay those of the reference mesh. With
``updated=True`` (updated Lagrangian, for large displacements such as the cavity) the
increments are small strains on the current geometry; stresses are not rotated (no objective
rate), which is adequate while element rotations stay small.
The reaction at a node is f_int - f_ext: the force that supports apply to the body in equilibrium.
"""

import time

import numpy as np
import taichi as ti

from kernels import runtime

TRI_DN = np.array([[-1.0, -1.0], [1.0, 0.0], [0.0, 1.0]])
HEX_NODES = np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1],
                      [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=float)


def hex_shape(xi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear shape functions at reference points xi (n, 3): N (n, 8) and dN/dxi (n, 8, 3)."""
    t = 1.0 + xi[:, None, :] * HEX_NODES[None, :, :]          # (n, 8, 3)
    N = t.prod(axis=2) / 8.0
    dN = np.empty(t.shape)
    for k in range(3):
        others = [j for j in range(3) if j != k]
        dN[:, :, k] = HEX_NODES[None, :, k] * t[:, :, others[0]] * t[:, :, others[1]] / 8.0
    return N, dN


def reference_element(npe: int, dim: int):
    """Quadrature of the reference element: dN/dxi (n_gp, npe, dim), N (n_gp, npe), weights (n_gp)."""
    if npe == 3 and dim == 2:
        return TRI_DN[None], np.full((1, 3), 1.0 / 3.0), np.array([0.5])
    if npe == 8 and dim == 3:
        N, dN = hex_shape(HEX_NODES / np.sqrt(3.0))
        return dN, N, np.ones(8)
    raise ValueError(f"unsupported element: {npe} nodes in {dim}D")


def element_geometry(points: np.ndarray, cells: np.ndarray, thickness: float = 1.0):
    """Shape-function gradients and integration weights at every Gauss point.

    Returns ``dNdx`` (n_elem, n_gp, npe, dim), ``weight`` (n_elem, n_gp) = w det J (x thickness
    in 2D) and ``N`` (n_gp, npe), the shape functions at the Gauss points. Raises ValueError on a
    non-positive Jacobian.
    """
    X = points[cells]                                            # (ne, npe, dim)
    dN, N, w = reference_element(cells.shape[1], points.shape[1])
    if points.shape[1] == 2:
        w = w * thickness
    J = np.einsum("eai,gaj->egij", X, dN)
    det = np.linalg.det(J)
    if np.any(det <= 0.0):
        bad = int(np.argwhere(det <= 0.0)[0, 0])
        raise ValueError(f"element {bad} has a non-positive Jacobian (inverted or degenerate)")
    dNdx = np.einsum("gaj,egji->egai", dN, np.linalg.inv(J))
    return dNdx, det * w[None, :], N


def critical_time_step(points: np.ndarray, cells: np.ndarray, wave_modulus: float, density: float,
                       nu: float | None = None, thickness: float = 1.0) -> float:
    """Stable central-difference step (s) from element eigenvalues: dt = 2 / sqrt(max_e lambda_max(M_e^-1 K_e)).

    The largest element eigenvalue bounds the global one. ``wave_modulus`` is the constrained
    modulus lambda + 2 mu (Pa); with ``nu`` None the worst case nu -> 0.5 at that modulus is used,
    which bounds every isotropic material with a constrained modulus up to ``wave_modulus``.
    """
    dim = points.shape[1]
    if nu is None:
        lam, mu = wave_modulus, 0.0
    else:
        mu = wave_modulus * (1.0 - 2.0 * nu) / (2.0 * (1.0 - nu))
        lam = wave_modulus - 2.0 * mu
    eye = np.eye(dim)
    D = lam * np.einsum("ij,kl->ijkl", eye, eye) + mu * (np.einsum("ik,jl->ijkl", eye, eye)
                                                         + np.einsum("il,jk->ijkl", eye, eye))
    dNdx, weight, N = element_geometry(points, cells, thickness)
    ne, npe = cells.shape
    dt = np.inf
    for start in range(0, ne, 4096):                              # bounded memory on big meshes
        B, w = dNdx[start:start + 4096], weight[start:start + 4096]
        K = np.einsum("eg,egaj,ijkl,egbl->eaibk", w, B, D, B).reshape(len(w), npe * dim, npe * dim)
        m = np.repeat(density * np.einsum("eg,ga->ea", w, N), dim, axis=1)
        s = 1.0 / np.sqrt(m)
        lam_max = np.linalg.eigvalsh(s[:, :, None] * K * s[:, None, :])[:, -1].max()
        dt = min(dt, 2.0 / np.sqrt(lam_max))
    return float(dt)


STATE_FIELDS = ("u", "v", "stress", "strain", "reaction", "work")


@ti.data_oriented
class ExplicitFEM:
    """State and kernels of one explicit FEM model.

    Parameters
    ----------
    points : (n_nodes, dim) reference coordinates, m.
    cells : (n_elem, npe) connectivity (triangles or hexahedra).
    density : inertial density, kg/m^3 (already multiplied by any mass scaling).
    thickness : out-of-plane thickness for 2D meshes, m.
    n_curves : number of recorded boundary quantities.
    """

    def __init__(self, points: np.ndarray, cells: np.ndarray, density: float, thickness: float = 1.0,
                 n_curves: int = 0, updated: bool = False):
        real = runtime.real()
        self.dtype = real
        self.dim = points.shape[1]
        self.npe = cells.shape[1]
        self.n_nodes, self.n_elem = points.shape[0], cells.shape[0]
        dNdx, weight, N = element_geometry(points, cells, thickness)
        self.ngp = weight.shape[1]
        self.n_gp = self.n_elem * self.ngp
        self.updated = bool(updated)
        self.material_s = 0.0       # wall time spent in material updates (s; includes queued FEM kernels on a GPU)
        self.volume = weight.copy()                              # (ne, ngp) m^3 (2D: area x thickness)
        self._cells, self._mass_shares = cells, np.einsum("eg,ga->ea", weight, N)
        dim, vec = self.dim, ti.types.vector(self.dim, real)
        self.X = ti.Vector.field(dim, real, shape=self.n_nodes)
        self.u = ti.Vector.field(dim, real, shape=self.n_nodes)
        self.v = ti.Vector.field(dim, real, shape=self.n_nodes)
        self.du = ti.Vector.field(dim, real, shape=self.n_nodes)
        self.f_int = ti.Vector.field(dim, real, shape=self.n_nodes)
        self.f_ext = ti.Vector.field(dim, real, shape=self.n_nodes)
        self.reaction = ti.Vector.field(dim, real, shape=self.n_nodes)
        self.mass = ti.field(real, shape=self.n_nodes)
        self.fixed = ti.Vector.field(dim, ti.i32, shape=self.n_nodes)
        self.v_fixed = ti.Vector.field(dim, real, shape=self.n_nodes)
        self.conn = ti.field(ti.i32, shape=(self.n_elem, self.npe))
        self.f_elem = ti.Vector.field(dim, real, shape=(self.n_elem, self.npe))
        flat = cells.ravel()
        order = np.argsort(flat, kind="stable")                # node -> (element, local node), CSR
        self.adj_ptr = ti.field(ti.i32, shape=self.n_nodes + 1)
        self.adj = ti.field(ti.i32, shape=flat.size)
        self.adj_ptr.from_numpy(np.searchsorted(flat[order], np.arange(self.n_nodes + 1)).astype(np.int32))
        self.adj.from_numpy(order.astype(np.int32))
        self.dNdx = ti.Matrix.field(self.npe, dim, real, shape=(self.n_elem, self.ngp))
        self.weight = ti.field(real, shape=(self.n_elem, self.ngp))
        self.stress = ti.Matrix.field(3, 3, real, shape=self.n_gp)
        self.strain = ti.Matrix.field(3, 3, real, shape=self.n_gp)
        self.deps = ti.Matrix.field(3, 3, real, shape=self.n_gp)
        self.inverted = ti.field(ti.i32, shape=())
        self.nonfinite = ti.field(ti.i32, shape=())
        self.work = ti.field(real, shape=self.n_gp)              # J: work of the stress on the strain, per point
        self.energy = ti.field(real, shape=2)                    # J: kinetic, stress work (see measure_energy)
        dN_ref, _, w_ref = reference_element(self.npe, dim)
        self.dNdxi = ti.Matrix.field(self.npe, dim, real, shape=self.ngp)
        self.w_ref = ti.field(real, shape=self.ngp)
        self.dNdxi.from_numpy(dN_ref.astype(runtime.np_real()))
        self.w_ref.from_numpy((w_ref * (thickness if dim == 2 else 1.0)).astype(runtime.np_real()))
        self.n_curves = max(n_curves, 1)
        self.curve_w_reaction = ti.Vector.field(dim, real, shape=(self.n_curves, self.n_nodes))
        self.curve_w_disp = ti.Vector.field(dim, real, shape=(self.n_curves, self.n_nodes))
        self.curve_w_strain = ti.Matrix.field(3, 3, real, shape=self.n_curves)
        self.curve_value = ti.field(real, shape=self.n_curves)
        self._vec = vec
        self.X.from_numpy(points.astype(runtime.np_real()))
        self.conn.from_numpy(cells.astype(np.int32))
        self.dNdx.from_numpy(dNdx.astype(runtime.np_real()))
        self.weight.from_numpy(weight.astype(runtime.np_real()))
        self.set_density(density)

    # ---- set-up -------------------------------------------------------------------------------
    def set_boundary(self, fixed: np.ndarray, v_fixed: np.ndarray) -> None:
        """Prescribed velocity: ``fixed`` (n_nodes, dim) 0/1 mask, ``v_fixed`` (n_nodes, dim) m/s."""
        self.fixed.from_numpy(fixed.astype(np.int32))
        self.v_fixed.from_numpy(v_fixed.astype(runtime.np_real()))

    def set_external_force(self, f_ext: np.ndarray) -> None:
        """Constant nodal external force (n_nodes, dim), N."""
        self.f_ext.from_numpy(f_ext.astype(runtime.np_real()))

    def set_stress(self, stress: np.ndarray) -> None:
        """Gauss-point stress (n_gp, 3, 3), Pa, tension positive."""
        self.stress.from_numpy(stress.astype(runtime.np_real()))

    def set_curves(self, w_reaction: np.ndarray, w_disp: np.ndarray, w_strain: np.ndarray) -> None:
        """Linear functionals recorded each step: value_c = sum_i w_r[c,i].R_i + w_u[c,i].u_i
        + sum_gp volume_gp (w_e[c] : strain_gp)."""
        nr = runtime.np_real()
        pad = self.n_curves - w_reaction.shape[0]
        self.curve_w_reaction.from_numpy(np.pad(w_reaction, ((0, pad), (0, 0), (0, 0))).astype(nr))
        self.curve_w_disp.from_numpy(np.pad(w_disp, ((0, pad), (0, 0), (0, 0))).astype(nr))
        self.curve_w_strain.from_numpy(np.pad(w_strain, ((0, pad), (0, 0), (0, 0))).astype(nr))

    def set_density(self, density: float) -> None:
        """Lumped nodal masses (kg) of the inertial ``density`` (kg/m^3, mass scaling included)."""
        mass = np.zeros(self.n_nodes)
        np.add.at(mass, self._cells, density * self._mass_shares)
        self.mass.from_numpy(mass.astype(runtime.np_real()))

    def lumped_mass(self) -> np.ndarray:
        return self.mass.to_numpy()

    # ---- kernels ------------------------------------------------------------------------------
    @ti.kernel
    def internal_force(self):
        """f_int = sum_gp B^T sigma w (N): element forces, then a gather per node in a fixed order
        (no atomics, so results are bit-reproducible run to run)."""
        for e, a in self.f_elem:
            f = ti.Vector.zero(self.dtype, self.dim)
            for b in ti.static(range(self.npe)):        # b == a: Vulkan cannot index a matrix by a variable
                if b == a:
                    for g in ti.static(range(self.ngp)):
                        s = self.stress[e * self.ngp + g]
                        w = self.weight[e, g]
                        for i in ti.static(range(self.dim)):
                            for j in ti.static(range(self.dim)):
                                f[i] += w * s[i, j] * self.dNdx[e, g][b, j]
            self.f_elem[e, a] = f
        for n in self.f_int:
            f = ti.Vector.zero(self.dtype, self.dim)
            for k in range(self.adj_ptr[n], self.adj_ptr[n + 1]):
                ea = self.adj[k]
                f += self.f_elem[ea // self.npe, ea % self.npe]
            self.f_int[n] = f

    @ti.kernel
    def advance(self, dt: ti.template(), alpha: ti.template(), c: ti.template()):
        """Central-difference update of v (half step) and u, with local (alpha) and mass (c) damping."""
        for i in self.u:
            f = self.f_ext[i] - self.f_int[i]
            self.reaction[i] = -f
            v = self.v[i]
            fd = f - alpha * ti.abs(f) * ti.math.sign(v) - c * self.mass[i] * v
            vn = v + dt * fd / self.mass[i]
            for d in ti.static(range(self.dim)):
                if self.fixed[i][d] != 0:
                    vn[d] = self.v_fixed[i][d]
            self.v[i] = vn
            self.du[i] = dt * vn
            self.u[i] += dt * vn

    @ti.kernel
    def update_geometry(self):
        """Updated Lagrangian: shape-function gradients and weights on the current coordinates X + u;
        counts Gauss points whose Jacobian is not positive (inverted elements)."""
        for e, g in self.weight:
            J = ti.Matrix.zero(self.dtype, self.dim, self.dim)
            for a in ti.static(range(self.npe)):
                n = self.conn[e, a]
                x = self.X[n] + self.u[n]
                for i in ti.static(range(self.dim)):
                    for j in ti.static(range(self.dim)):
                        J[i, j] += x[i] * self.dNdxi[g][a, j]
            det = J.determinant()
            if det <= 0.0:
                self.inverted[None] += 1
            else:
                self.dNdx[e, g] = self.dNdxi[g] @ J.inverse()
                self.weight[e, g] = self.w_ref[g] * det

    @ti.kernel
    def strain_increment(self):
        """deps = sym(grad du) at every Gauss point; counts points where det(I + grad u) <= 0."""
        for e, g in self.weight:
            G = ti.Matrix.zero(self.dtype, 3, 3)
            H = ti.Matrix.identity(self.dtype, 3)
            for a in ti.static(range(self.npe)):
                n = self.conn[e, a]
                for i in ti.static(range(self.dim)):
                    for j in ti.static(range(self.dim)):
                        G[i, j] += self.du[n][i] * self.dNdx[e, g][a, j]
                        H[i, j] += self.u[n][i] * self.dNdx[e, g][a, j]
            k = e * self.ngp + g
            d = 0.5 * (G + G.transpose())
            self.deps[k] = d
            self.work[k] = self.work[k] + 0.5 * self.weight[e, g] * (self.stress[k] * d).sum()
            if ti.static(not self.updated):
                if H.determinant() <= 0.0:
                    self.inverted[None] += 1

    @ti.kernel
    def accumulate_strain(self):
        """strain += deps and the other half of the step's work (trapezoidal rule: the work of the
        mean of the old and new stress on deps); counts Gauss points whose new stress is not finite."""
        for k in self.strain:
            self.strain[k] += self.deps[k]
            s = self.stress[k]
            self.work[k] = self.work[k] + 0.5 * self.weight[k // self.ngp, k % self.ngp] * (s * self.deps[k]).sum()
            ok = True
            for i, j in ti.static(ti.ndrange(3, 3)):
                if not (ti.abs(s[i, j]) < ti.math.inf):
                    ok = False
            if not ok:
                self.nonfinite[None] += 1

    @ti.kernel
    def record_curves(self):
        """curve_value[c] (see ``set_curves``); each curve is summed serially in a fixed order."""
        for c in self.curve_value:
            acc = 0.0
            for i in range(self.n_nodes):
                acc += self.curve_w_reaction[c, i].dot(self.reaction[i]) + self.curve_w_disp[c, i].dot(self.u[i])
            for k in range(self.n_gp):
                e = k // self.ngp
                acc += self.weight[e, k % self.ngp] * (self.curve_w_strain[c] * self.strain[k]).sum()
            self.curve_value[c] = acc

    @ti.kernel
    def measure_energy(self):
        """energy[0] = kinetic energy sum_i m_i |v_i|^2 / 2 (J, inertial mass: scaling included);
        energy[1] = the stress work since the start, summed over points in magnitude:
        sum_k |W_k| with W_k the integral of sigma : d(eps) dV at point k (J). Point by point in
        magnitude so that regions unloading (an active wall, released prestress: W_k < 0) and
        regions loading do not cancel. Serial sums in a fixed order: the same result run to run."""
        for _ in range(1):
            kin = 0.0
            for i in range(self.n_nodes):
                kin += 0.5 * self.mass[i] * self.v[i].dot(self.v[i])
            w = 0.0
            for k in range(self.n_gp):
                w += ti.abs(self.work[k])
            self.energy[0] = kin
            self.energy[1] = w

    def energies(self) -> tuple[float, float]:
        """(kinetic energy, stress work) in J (see :meth:`measure_energy`)."""
        self.measure_energy()
        e = self.energy.to_numpy()
        return float(e[0]), float(e[1])

    def step(self, material, dt: float, alpha: float, c: float) -> None:
        """One explicit step (see module docstring)."""
        self.internal_force()
        self.advance(dt, alpha, c)
        if self.updated:
            self.update_geometry()
        self.strain_increment()
        t = time.perf_counter()
        material.update(self.deps, self.stress)
        self.material_s += time.perf_counter() - t
        self.accumulate_strain()

    # ---- state --------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Copies of the evolving fields (for output and checkpoints)."""
        return {name: getattr(self, name).to_numpy() for name in STATE_FIELDS}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`state`; a checkpoint written before ``work`` existed starts it at 0."""
        for name in STATE_FIELDS:
            if name in state:
                getattr(self, name).from_numpy(state[name])
