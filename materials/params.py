"""Parameter schemas of the constitutive models: names, units, defaults, bounds, options, files.

A :class:`ParamSchema` describes one model's parameters and options; each model module declares its
own (``materials.csuh.SCHEMA`` ...) and the registry (``kernels.registry``) names every model once.
Units: CSUH and MCC parameters are dimensionless; IME's ``E0``, ``A``, ``sigma_y0``, ``C`` and
elastic ``E`` are in Pa. Options that are pressures (``p_min``) are in Pa at this interface and
converted inside the material. See ``docs/materials.md``.

Parameters outside their bounds (Table 1 of the paper, spec §10 [A19] for IME) are accepted with a
warning (the paper's own optimised sets leave them); physically impossible values raise ValueError.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Param:
    """One parameter: name, unit, default (the paper's Original set) and bounds [lo, hi]."""
    name: str
    unit: str
    default: float
    bounds: tuple[float, float]


@dataclass(frozen=True)
class Option:
    """One option: ``kind`` 'choice' (allowed strings), 'float' ((lo, hi), lo inclusive, hi exclusive),
    'int' ((lo, hi) inclusive), 'bool', or 'real' / 'count' (a number / an integer for which the
    predicate ``allowed`` holds, the range stated by ``text``); ``static`` options are fixed when a
    batch is compiled."""
    name: str
    kind: str
    allowed: object
    default: object
    static: bool = False
    text: str = ""


@dataclass(frozen=True)
class ParamSchema:
    """The parameters and options of one model, and how a case file, a CLI or a file gives them.

    ``rules(p)`` returns ``(key, why)`` pairs for physically impossible values of a full set ``p``.
    ``phi`` (degrees) may replace ``M`` when ``accepts_phi``.
    """
    model: str
    params: tuple[Param, ...]
    options: tuple[Option, ...] = ()
    presets: dict = field(default_factory=dict)
    rules: Callable[[dict], list] = lambda p: []
    accepts_phi: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    @property
    def bounds(self) -> dict:
        return {p.name: p.bounds for p in self.params}

    @property
    def units(self) -> dict:
        return {p.name: p.unit for p in self.params}

    def option(self, name: str) -> Option:
        return {o.name: o for o in self.options}[name]

    def default_options(self) -> dict:
        return {o.name: o.default for o in self.options}

    def _allowed_names(self) -> str:
        return ", ".join(self.names) + (", phi" if self.accepts_phi else "")

    def check_params(self, params: dict | None, where: str = "params", warn: bool = True) -> dict:
        """Full parameter dict (defaults filled) from a partial one; raises ValueError for unknown
        names and impossible values, warns outside the bounds."""
        out = self.defaults
        given = dict(params or {})
        if "phi" in given:
            given["M"] = self._phi_to_M(given, where)
        for k, v in given.items():
            if k not in out:
                raise ValueError(f"{where}: material.{k} is not a parameter of model {self.model}; "
                                 f"allowed: {self._allowed_names()}")
            out[k] = _as_float(v, k, where)
        for k, v in out.items():
            if not math.isfinite(v):
                raise ValueError(f"{where}: material.{k} = {v!r} is not a finite number")
        for key, why in self.rules(out):
            raise ValueError(f"{where}: material.{key} = {out[key]!r} {why}")
        if warn:
            for k, (lo, hi) in self.bounds.items():
                if not lo <= out[k] <= hi:
                    log.warning("%s: material.%s = %g is outside its bounds [%g, %g]", where, k, out[k], lo, hi)
        return out

    def _phi_to_M(self, given: dict, where: str) -> float:
        if not self.accepts_phi:
            raise ValueError(f"{where}: material.phi is not a parameter of model {self.model}; "
                             f"allowed: {', '.join(self.names)}")
        if "M" in given:
            raise ValueError(f"{where}: material.phi and material.M both given; give one of them")
        phi = _as_float(given.pop("phi"), "phi", where)
        if not 0.0 < phi < 90.0:
            raise ValueError(f"{where}: material.phi = {phi} must be in (0, 90) degrees")
        return friction_to_M(phi)

    def check_options(self, options: dict | None, where: str = "options") -> dict:
        """Full option dict (defaults filled); raises ValueError naming the key and what is allowed."""
        out = self.default_options()
        known = {o.name: o for o in self.options}
        for k, v in (options or {}).items():
            if k not in known:
                raise ValueError(f"{where}: material.{k} is not a key of model {self.model}; allowed: "
                                 f"{', '.join(self.names + tuple(known))}, params")
            out[k] = check_option(known[k], v, where)
        return out

    def resolve(self, table: dict, where: str, base_dir=None) -> tuple[dict, dict]:
        """(params, options) from a case file's ``[material]`` keys: ``params`` (path of a params.toml,
        relative to ``base_dir``), parameter names (``phi`` instead of ``M``), option names.
        Precedence: defaults < file < table."""
        from_file, given, opts = {}, {}, {}
        names = set(self.names) | ({"phi"} if self.accepts_phi else set())
        for k, v in table.items():
            if k == "params":
                from_file = self._params_file(v, where, base_dir)
            elif k in names:
                given[k] = v
            elif k in {o.name for o in self.options}:
                opts[k] = v
            else:
                raise ValueError(f"{where}: material.{k} is not a key of model {self.model}; allowed: "
                                 f"model, params, {', '.join(sorted(names) + [o.name for o in self.options])}")
        if "M" in given or "phi" in given:
            from_file.pop("M", None)
            from_file.pop("phi", None)
        return self.check_params({**from_file, **given}, where), self.check_options(opts, where)

    def _params_file(self, value, where: str, base_dir) -> dict:
        if not isinstance(value, str):
            raise ValueError(f"{where}: material.params = {value!r} must be a path string")
        p = Path(value)
        if base_dir is not None and not p.is_absolute():
            p = Path(base_dir) / p
        try:
            return self.load_file(p)
        except ValueError as exc:
            raise ValueError(f"{where}: material.params: {exc}") from None

    def load_file(self, path) -> dict:
        """Parameters from a TOML file (keys = parameter names, top level or under ``[params]``).

        Returns the *given* values only (not defaults); raises ValueError for unknown names."""
        import tomllib

        path = Path(path)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ValueError(f"{path}: parameter file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML ({exc})") from None
        if "params" in data and isinstance(data["params"], dict):
            extra = [k for k in data if k not in ("params", "model")]
            if extra:
                raise ValueError(f"{path}: keys outside [params]: {', '.join(extra)}")
            data = data["params"]
        data = {k: v for k, v in data.items() if k != "model"}
        self.check_params(data, where=str(path), warn=False)
        return data

    def write_file(self, path, params: dict) -> None:
        """Write ``params`` (every name of the model) as a TOML file with a ``[params]`` table."""
        full = self.check_params(params, warn=False)
        lines = [f"# {self.model} parameters (see docs/materials.md for units)", f'model = "{self.model}"', "",
                 "[params]"] + [f"{k} = {full[k]!r}" for k in self.names]
        Path(path).write_text("\n".join(lines) + "\n")


def _as_float(v, key, where) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where}: material.{key} = {v!r} must be a number")
    return float(v)


def check_option(opt: Option, v, where: str):
    """``v`` checked against ``opt`` (converted to its type); ValueError naming the key and the range."""
    k, allowed = opt.name, opt.allowed
    if opt.kind in ("real", "count"):
        return _check_predicate(opt, v, where)
    if opt.kind == "choice":
        if v not in allowed:
            raise ValueError(f"{where}: material.{k} = {v!r} is not allowed; allowed: {', '.join(allowed)}")
        return v
    if opt.kind == "bool":
        if not isinstance(v, bool):
            raise ValueError(f"{where}: material.{k} = {v!r} must be true or false")
        return v
    number = not isinstance(v, bool) and isinstance(v, (int, float))
    if opt.kind == "int":
        if not number or int(v) != v or not allowed[0] <= v <= allowed[1]:
            raise ValueError(f"{where}: material.{k} = {v!r} must be an integer; allowed: "
                             f"{allowed[0]} ... {allowed[1]}")
        return int(v)
    if not number or not allowed[0] <= v < allowed[1]:
        raise ValueError(f"{where}: material.{k} = {v!r} is out of range; allowed: "
                         f"{allowed[0]} <= {k} < {allowed[1]}")
    return float(v)


def _check_predicate(opt: Option, v, where: str):
    integer = opt.kind == "count"
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) \
            or (not integer and not math.isfinite(v)):
        raise ValueError(f"{where}: material.{opt.name} must be {'an integer' if integer else 'a number'}, got {v!r}")
    v = int(v) if integer else float(v)
    if not opt.allowed(v):
        raise ValueError(f"{where}: material.{opt.name} = {v!r} is out of range (allowed: {opt.text})")
    return v


def friction_to_M(phi_deg: float) -> float:
    """Triaxial-compression critical stress ratio from the friction angle (Eq. 22)."""
    s = math.sin(math.radians(phi_deg))
    return 6.0 * s / (3.0 - s)


def M_to_friction(M: float) -> float:
    """Friction angle (degrees) from M, sin(phi) = 3M/(6+M)."""
    return math.degrees(math.asin(3.0 * M / (6.0 + M)))


def poisson_rule(p: dict) -> list:
    """-1 < nu < 0.5 (isotropic elasticity)."""
    return [] if -1.0 < p["nu"] < 0.5 else [("nu", "must be in (-1, 0.5)")]


def camclay_rules(p: dict) -> list:
    """Impossible values of the Cam-clay family (CSUH, MCC)."""
    bad = [(k, "must be > 0") for k in ("kappa", "lambda", "e0", "M") if p[k] <= 0]
    if p["lambda"] <= p["kappa"]:
        bad.append(("lambda", f"must be > kappa = {p['kappa']}"))
    if not 0.0 < p["M"] < 3.0:
        bad.append(("M", "must be in (0, 3) (Mohr-Coulomb limit)"))
    return bad + poisson_rule(p)


# Table 1 of the paper: bounds of the Cam-clay family's parameters, with the Original values (Table 5).
CAMCLAY = {p.name: p for p in (
    Param("kappa", "-", 0.04, (0.01, 0.25)), Param("lambda", "-", 0.135, (0.02, 0.25)),
    Param("N", "-", 1.9, (0.3, 3.0)), Param("Z", "-", 0.9, (0.3, 3.0)), Param("m", "-", 1.8, (0.5, 2.5)),
    Param("nu", "-", 0.2, (0.1, 0.5)), Param("e0", "-", 0.721, (0.2, 0.8)), Param("M", "-", 1.25, (0.8, 2.0)))}

# Options of every stress-point integrator (spec §5.1).
INTEGRATOR_OPTIONS = (
    Option("delta_r", "float", (0.0, 0.5), 0.03),
    Option("substep_rule", "choice", ("paper", "linear"), "paper"),
    Option("eps_ref", "float", (1e-12, 1.0), 1e-4),
    Option("t_max", "int", (1, 100000), 64),
    Option("n_sub", "int", (0, 100000), 0),
)
P_MIN = Option("p_min", "float", (1e-6, 1e9), 1000.0)
