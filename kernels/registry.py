"""Every material model, named once: its schema, state, diagnostics and how to build its batch.

A model is one :class:`ModelSpec` passed to :func:`register`. The FEM driver, the element tests,
replay and the calibration reach materials only through this module:

* :func:`configure` validates a case file's ``[material]`` keys into a frozen :class:`MaterialConfig`;
* :func:`build` makes the :class:`kernels.material.MaterialBatch` of a configuration for a
  :class:`BatchRequest` (points, initial pressure, kinematics, dimension);
* :func:`point_batch` is the same for a model name and parameters (element tests, replay).

A builder is a callable or, for the built-in models, the dotted path ``"module:function"`` of one,
loaded on first use: importing the registry loads no batch module, and the batch modules may use the
registry without an import cycle.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from materials import csuh, elastic, ime, mcc
from materials.params import ParamSchema


@dataclass(frozen=True)
class BatchRequest:
    """What a batch is built for: ``n_points`` points starting from -p0 I (p0 in Pa, compression +),
    the run's kinematics (``plane_strain``, ``plane_stress``, ``3d``), mesh dimension, the Gauss
    points per element (for messages naming elements) and, for a batch partitioned over Ray actors,
    ``cluster``: the ``HOST:PORT`` of a running Ray cluster (None: a local one is started)."""
    n_points: int
    p0: float
    kinematics: str = "3d"
    dim: int = 3
    points_per_element: int = 1
    cluster: str | None = None


@dataclass(frozen=True)
class MaterialConfig:
    """A validated ``[material]`` table: full parameter and option sets, and model settings."""
    model: str
    density: float
    params: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    settings: object = None

    def resolved(self) -> dict:
        """The configuration as written to ``run.json`` (every default filled in)."""
        out = {"model": self.model, "density": self.density}
        if self.settings is not None:
            return {**out, **self.settings.resolved()}
        return {**out, "params": dict(self.params), "options": dict(self.options)}


@dataclass(frozen=True)
class ModelSpec:
    """One material model.

    ``schema``: parameters (names, units, defaults, bounds) and options; ``build(config, request)``
    makes its batch (a callable or ``"module:function"``); ``state``: internal state names; ``diagnostics`` and which of them are stresses
    (Pa); ``physics``: the Taichi physics class of a stress-point model; ``point_tests``: it runs from
    strain increments alone (element tests, replay); ``out_of_plane_2d``: 2D runs carry sigma_zz;
    ``configure(keys, where, base_dir) -> (params, options, settings)`` replaces the schema's own
    validation for models with other settings (DEM).
    """
    schema: ParamSchema
    build: Callable | str
    summary: str
    state: tuple = ()
    differentiable: bool = False
    diagnostics: tuple = ()
    stress_diagnostics: tuple = ()
    physics: type | None = None
    point_tests: bool = True
    out_of_plane_2d: bool = True
    configure: Callable | str | None = None

    @property
    def name(self) -> str:
        return self.schema.model

    def make(self, config: "MaterialConfig", request: BatchRequest):
        """The batch of ``config`` for ``request``."""
        return _load(self.build)(config, request)


_MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a model; returns ``spec``."""
    _MODELS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a model (tests that register a model of their own)."""
    _MODELS.pop(name, None)


def names(differentiable: bool | None = None, point_tests: bool | None = None) -> tuple[str, ...]:
    """Registered model names, optionally only the differentiable / element-testable ones."""
    return tuple(n for n, s in _MODELS.items()
                 if (differentiable is None or s.differentiable == differentiable)
                 and (point_tests is None or s.point_tests == point_tests))


def get(name: str) -> ModelSpec:
    """The model called ``name``; ValueError naming the allowed ones otherwise."""
    if name not in _MODELS:
        raise ValueError(f"model must be one of {', '.join(_MODELS)}, got {name!r}")
    return _MODELS[name]


def configure(model: str, keys: dict, where: str, density: float, base_dir: Path | None = None) -> MaterialConfig:
    """Validate a ``[material]`` table's model keys (everything but ``model`` and ``density``)."""
    spec = get(model)
    if spec.configure is not None:
        params, options, settings = _load(spec.configure)(keys, where, base_dir)
    else:
        (params, options), settings = spec.schema.resolve(keys, where, base_dir=base_dir), None
    return MaterialConfig(model=model, density=density, params=params, options=options, settings=settings)


def build(config: MaterialConfig, request: BatchRequest):
    """The material batch of ``config`` for ``request``."""
    return get(config.model).make(config, request)


def point_batch(model: str, n_points: int, p0: float, params: dict | None = None, options: dict | None = None):
    """A batch of ``n_points`` of ``model`` with parameters and options checked here (3D kinematics)."""
    spec = get(model)
    if not spec.point_tests:
        raise ValueError(f"model {model} cannot run from strain increments alone; "
                         f"allowed: {', '.join(names(point_tests=True))}")
    if not (p0 > 0 and math.isfinite(p0)):
        raise ValueError(f"p0 must be > 0 Pa (compression positive), got {p0}")
    config = MaterialConfig(model=model, density=1.0, params=spec.schema.check_params(params, where=model),
                            options=spec.schema.check_options(options, where=model))
    return spec.make(config, BatchRequest(n_points=n_points, p0=p0))


def _load(ref):
    """A callable, or the one a ``"module:function"`` string names."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _builtin() -> None:
    common = dict(build="kernels.stress_point:build_batch", differentiable=True, stress_diagnostics=("p", "q", "q_tilde", "px0", "pc"))
    register(ModelSpec(csuh.SCHEMA, summary="CSUH surrogate (chi = 0), the paper's differentiable model",
                       state=csuh.CSUH.state_names, diagnostics=csuh.DIAGNOSTICS, physics=csuh.CSUH, **common))
    register(ModelSpec(mcc.SCHEMA, summary="Modified Cam-Clay", state=mcc.MCC.state_names,
                       diagnostics=mcc.DIAGNOSTICS, physics=mcc.MCC, **common))
    register(ModelSpec(ime.SCHEMA, summary="enhanced IME (paper Eq. 53)", state=ime.IME.state_names,
                       diagnostics=ime.DIAGNOSTICS, physics=ime.IME, **common))
    register(ModelSpec(elastic.SCHEMA, build="kernels.elastic:build_batch", summary="linear isotropic elasticity"))
    register(ModelSpec(ParamSchema("dem", params=()), build="kernels.partition:build_cells",
                       configure="kernels.rve_batch:configure", point_tests=False,
                       summary="DEM cells (periodic disk/sphere packings) at every Gauss point",
                       diagnostics=("unbalanced", "steps", "contacts", "loose", "capped", "inertia"),
                       out_of_plane_2d=False))


_builtin()
