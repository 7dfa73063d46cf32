"""A toy model for the registry test: isotropic elasticity given by bulk and shear moduli (Pa).

This file is all a new model needs (a schema, a batch with the MaterialBatch interface, here from
``StatelessBatch`` and two methods, a builder) besides its one :func:`kernels.registry.register` call.
"""
import taichi as ti

from kernels.material import StatelessBatch
from kernels.registry import ModelSpec
from materials.params import Param, ParamSchema

SCHEMA = ParamSchema("toy_kg", params=(Param("K", "Pa", 1e6, (1e3, 1e12)), Param("G", "Pa", 5e5, (1e3, 1e12))),
                     rules=lambda p: [(k, "must be > 0") for k in ("K", "G") if p[k] <= 0])


@ti.data_oriented
class BulkShearBatch(StatelessBatch):
    """sigma += K tr(deps) I + 2 G dev(deps), tension positive, Pa."""

    def __init__(self, n_points: int, p0: float, K: float, G: float):
        self.n_points, self.p0, self.K, self.G = n_points, p0, K, G

    @ti.kernel
    def _update(self, deps: ti.template(), stress: ti.template(), K: ti.f64, G: ti.f64):
        for i in deps:
            d = deps[i]
            tr = d.trace()
            stress[i] += 2.0 * G * d + (K - 2.0 * G / 3.0) * tr * ti.Matrix.identity(float, 3)

    def update(self, deps, stress) -> None:
        self._update(deps, stress, self.K, self.G)

    def wave_modulus(self) -> float:
        return self.K + 4.0 * self.G / 3.0


def build(config, request):
    return BulkShearBatch(request.n_points, request.p0, config.params["K"], config.params["G"])


SPEC = ModelSpec(SCHEMA, build=build, summary="toy: elasticity from K and G")
