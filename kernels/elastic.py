"""Batched linear elastic Gauss-point material (the FEM's default material)."""
import taichi as ti

from kernels import runtime
from kernels.material import StatelessBatch
from materials import elastic


@ti.data_oriented
class ElasticBatch(StatelessBatch):
    """Linear isotropic elasticity at ``n_points`` points.

    Parameters
    ----------
    n_points : number of Gauss points.
    p0 : initial isotropic mean pressure (Pa, compression positive); initial stress is -p0 I.
    E, nu : Young's modulus (Pa) and Poisson's ratio.
    plane_stress : eliminate the out-of-plane strain so that sigma_zz stays at its initial value.
    """

    def __init__(self, n_points: int, p0: float, E: float, nu: float, plane_stress: bool = False):
        self.n_points = n_points
        self.p0 = float(p0)
        self.E, self.nu = float(E), float(nu)
        self.plane_stress = bool(plane_stress)
        self.lam, self.mu = elastic.lame(self.E, self.nu)
        self.dtype = runtime.real()

    @ti.kernel
    def _update(self, deps: ti.template(), stress: ti.template(), lam: ti.template(), mu: ti.template(),
                plane_stress: ti.template()):
        for i in deps:
            if ti.static(plane_stress):
                deps[i] = elastic.plane_stress_strain(deps[i], lam, mu)
            stress[i] += elastic.stress_increment(deps[i], lam, mu)

    def update(self, deps, stress) -> None:
        """Add the elastic stress increment of ``deps`` (tension positive) to ``stress`` (Pa).

        In plane stress the zz component of ``deps`` is overwritten with the out-of-plane strain.
        """
        self._update(deps, stress, self.lam, self.mu, self.plane_stress)

    def wave_modulus(self) -> float:
        """Constrained (P-wave) modulus, Pa."""
        return elastic.constrained_modulus(self.E, self.nu, self.plane_stress)


def build_batch(config, request) -> ElasticBatch:
    """The registry's builder (``kernels.registry``): plane stress when the run's kinematics say so."""
    return ElasticBatch(request.n_points, request.p0, config.params["E"], config.params["nu"],
                        plane_stress=request.kinematics == "plane_stress")
