"""Parameter sets of the constitutive surrogates: names, defaults, bounds, options, case-file resolution.

Units: CSUH and MCC parameters are dimensionless (slopes, void ratios, ratios); IME parameters
``E0``, ``A``, ``sigma_y0``, ``C`` are in Pa. Options that are pressures (``p_min``) are in Pa at
this interface and converted inside the material. See ``docs/materials.md``.

Defaults are the paper's 'Original' sets (Tables 5, 12, 13); bounds are Table 1 (CSUH, MCC) and
spec §10 [A19] (IME). Parameters outside the bounds are accepted with a warning (the paper's own
optimised sets leave them); physically impossible values raise.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

MODELS = ("csuh", "mcc", "ime", "elastic")

PARAM_NAMES = {
    "csuh": ("kappa", "lambda", "N", "Z", "m", "nu", "e0", "M"),
    "mcc": ("kappa", "lambda", "N", "nu", "e0", "M"),
    "ime": ("E0", "nu", "A", "B", "eps0", "sigma_y0", "Cd", "Cp", "C", "D", "eps0p", "nE"),
    "elastic": ("E", "nu"),
}

DEFAULTS = {
    "csuh": dict(kappa=0.04, lambda_=0.135, N=1.9, Z=0.9, m=1.8, nu=0.2, e0=0.721, M=1.25),
    "mcc": dict(kappa=0.04, lambda_=0.135, N=1.9, nu=0.2, e0=0.721, M=1.25),
    "ime": dict(E0=2e7, nu=0.2, A=3e5, B=0.2, eps0=0.02, sigma_y0=1e4, Cd=0.1, Cp=-0.1, C=3e5,
                D=0.2, eps0p=0.02, nE=0.1),
    "elastic": dict(E=2e7, nu=0.2),
}
DEFAULTS = {m: {("lambda" if k == "lambda_" else k): v for k, v in d.items()} for m, d in DEFAULTS.items()}

_TABLE1 = dict(kappa=(0.01, 0.25), lambda_=(0.02, 0.25), N=(0.3, 3.0), Z=(0.3, 3.0), m=(0.5, 2.5),
               nu=(0.1, 0.5), e0=(0.2, 0.8), M=(0.8, 2.0))
_TABLE1 = {("lambda" if k == "lambda_" else k): v for k, v in _TABLE1.items()}


def _ime_bounds():
    out = {}
    for k, v in DEFAULTS["ime"].items():
        if k == "nu":
            out[k] = (0.1, 0.5)
        elif k in ("Cp", "Cd", "B", "D", "nE"):
            out[k] = (-5.0, 5.0)
        else:
            out[k] = (v / 100.0, v * 100.0)
    return out


BOUNDS = {
    "csuh": {k: _TABLE1[k] for k in PARAM_NAMES["csuh"]},
    "mcc": {k: _TABLE1[k] for k in PARAM_NAMES["mcc"]},
    "ime": _ime_bounds(),
    "elastic": {"E": (1e3, 1e12), "nu": (-0.99, 0.499)},
}

# Named parameter sets of the paper (Tables 5, 10, 13, 15, 14).
PRESETS = {
    ("csuh", "original"): DEFAULTS["csuh"],
    ("csuh", "optimised-2d"): dict(kappa=0.162, **{"lambda": 0.223}, N=2.253, Z=0.516, m=0.635,
                                   nu=0.236, e0=0.276, M=0.792),
    ("csuh", "optimised-3d"): dict(kappa=0.119, **{"lambda": 0.167}, N=2.653, Z=0.628, m=0.596,
                                   nu=0.249, e0=0.366, M=0.895),
    ("mcc", "original"): DEFAULTS["mcc"],
    ("ime", "original"): DEFAULTS["ime"],
    ("ime", "optimised"): dict(E0=4.81e8, nu=0.216, A=34.5, B=-2.23, eps0=2.79e-2, sigma_y0=5.17e-6,
                               Cd=0.155, Cp=-0.512, C=8.35e-5, D=0.424, eps0p=8.83e-4, nE=-3.54),
}

# Options: name -> (kind, allowed, default). kind 'choice' (tuple of strings), 'float' ((lo, hi), lo
# inclusive, hi exclusive), 'int' ((lo, hi) inclusive), 'bool'.
_COMMON = {
    "delta_r": ("float", (0.0, 0.5), 0.03),
    "substep_rule": ("choice", ("paper", "linear"), "paper"),
    "eps_ref": ("float", (1e-12, 1.0), 1e-4),
    "t_max": ("int", (1, 100000), 64),
    "n_sub": ("int", (0, 100000), 0),
}
OPTIONS = {
    "csuh": {"lode": ("choice", ("exp", "two-anchor", "ts", "none"), "exp"),
             "lode_grad": ("choice", ("full", "frozen"), "full"),
             "p_min": ("float", (1e-6, 1e9), 1000.0), **_COMMON},
    "mcc": {"mcc_init": ("choice", ("nc", "ncl"), "nc"),
            "p_min": ("float", (1e-6, 1e9), 1000.0), **_COMMON},
    "ime": dict(_COMMON),
    "elastic": {"plane_stress": ("bool", None, False)},
}


def friction_to_M(phi_deg: float) -> float:
    """Triaxial-compression critical stress ratio from the friction angle (Eq. 22)."""
    s = math.sin(math.radians(phi_deg))
    return 6.0 * s / (3.0 - s)


def M_to_friction(M: float) -> float:
    """Friction angle (degrees) from M, sin(phi) = 3M/(6+M)."""
    return math.degrees(math.asin(3.0 * M / (6.0 + M)))


def _check_model(model: str, where: str = "material") -> None:
    if model not in MODELS:
        raise ValueError(f"{where}: material.model = {model!r} is not known; allowed: {', '.join(MODELS)}")


def default_options(model: str) -> dict:
    _check_model(model)
    return {k: v[2] for k, v in OPTIONS[model].items()}


def _physical_check(model: str, p: dict, where: str) -> None:
    def bad(key, why):
        raise ValueError(f"{where}: material.{key} = {p[key]!r} {why}")

    for k, v in p.items():
        if not math.isfinite(v):
            bad(k, "is not a finite number")
    if model in ("csuh", "mcc"):
        for k in ("kappa", "lambda", "e0", "M"):
            if p[k] <= 0:
                bad(k, "must be > 0")
        if p["lambda"] <= p["kappa"]:
            bad("lambda", f"must be > kappa = {p['kappa']}")
        if not 0.0 < p["M"] < 3.0:
            bad("M", "must be in (0, 3) (Mohr-Coulomb limit)")
        if not -1.0 < p["nu"] < 0.5:
            bad("nu", "must be in (-1, 0.5)")
        if model == "csuh" and p["m"] < 0:
            bad("m", "must be >= 0")
    elif model == "ime":
        if p["E0"] <= 0:
            bad("E0", "must be > 0")
        if not -1.0 < p["nu"] < 0.5:
            bad("nu", "must be in (-1, 0.5)")
    elif model == "elastic":
        if p["E"] <= 0:
            bad("E", "must be > 0")
        if not -1.0 < p["nu"] < 0.5:
            bad("nu", "must be in (-1, 0.5)")


def check_params(model: str, params: dict | None, where: str = "params", warn: bool = True) -> dict:
    """Full parameter dict (defaults filled) from a partial one; ``phi`` (degrees) may replace ``M``.

    Raises ValueError for unknown names and impossible values; warns outside the bounds.
    """
    _check_model(model, where)
    out = dict(DEFAULTS[model])
    given = dict(params or {})
    if "phi" in given:
        if "M" in given:
            raise ValueError(f"{where}: material.phi and material.M both given; give one of them")
        if model not in ("csuh", "mcc"):
            raise ValueError(f"{where}: material.phi is not a parameter of model {model}; "
                             f"allowed: {', '.join(PARAM_NAMES[model])}")
        phi = _as_float(given.pop("phi"), "phi", where)
        if not 0.0 < phi < 90.0:
            raise ValueError(f"{where}: material.phi = {phi} must be in (0, 90) degrees")
        given["M"] = friction_to_M(phi)
    for k, v in given.items():
        if k not in out:
            raise ValueError(f"{where}: material.{k} is not a parameter of model {model}; "
                             f"allowed: {', '.join(PARAM_NAMES[model])}"
                             + (", phi" if model in ("csuh", "mcc") else ""))
        out[k] = _as_float(v, k, where)
    _physical_check(model, out, where)
    if warn:
        for k, (lo, hi) in BOUNDS[model].items():
            if not lo <= out[k] <= hi:
                log.warning("%s: material.%s = %g is outside its bounds [%g, %g]", where, k, out[k], lo, hi)
    return out


def _as_float(v, key, where) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where}: material.{key} = {v!r} must be a number")
    return float(v)


def check_options(model: str, options: dict | None, where: str = "options") -> dict:
    """Full option dict (defaults filled); raises ValueError naming the key and what is allowed."""
    _check_model(model, where)
    out = default_options(model)
    for k, v in (options or {}).items():
        if k not in OPTIONS[model]:
            raise ValueError(f"{where}: material.{k} is not a key of model {model}; allowed: "
                             f"{', '.join(PARAM_NAMES[model] + tuple(OPTIONS[model]))}, params")
        kind, allowed, _ = OPTIONS[model][k]
        if kind == "choice":
            if v not in allowed:
                raise ValueError(f"{where}: material.{k} = {v!r} is not allowed; allowed: {', '.join(allowed)}")
        elif kind == "bool":
            if not isinstance(v, bool):
                raise ValueError(f"{where}: material.{k} = {v!r} must be true or false")
        elif kind == "int":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v \
                    or not allowed[0] <= v <= allowed[1]:
                raise ValueError(f"{where}: material.{k} = {v!r} must be an integer; allowed: "
                                 f"{allowed[0]} ... {allowed[1]}")
            v = int(v)
        else:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not allowed[0] <= v < allowed[1]:
                raise ValueError(f"{where}: material.{k} = {v!r} is out of range; allowed: "
                                 f"{allowed[0]} <= {k} < {allowed[1]}")
            v = float(v)
        out[k] = v
    return out


def load_params_file(path, model: str) -> dict:
    """Parameters from a TOML file (keys = parameter names, top level or under ``[params]``).

    Returns the *given* values only (not defaults); raises ValueError for unknown names.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - python < 3.11
        import tomli as tomllib
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
    check_params(model, data, where=str(path), warn=False)
    return data


def write_params_file(path, model: str, params: dict) -> None:
    """Write ``params`` (all names of ``model``) as a TOML file with a ``[params]`` table."""
    full = check_params(model, params, warn=False)
    lines = [f"# {model} parameters (see docs/materials.md for units)", f'model = "{model}"', "", "[params]"]
    for k in PARAM_NAMES[model]:
        lines.append(f"{k} = {full[k]!r}")
    Path(path).write_text("\n".join(lines) + "\n")


def resolve(model: str, table: dict, where: str, base_dir=None) -> tuple[dict, dict]:
    """(params, options) from a case file's ``[material]`` table.

    Keys: ``model`` (ignored here), ``params`` (path of a params.toml, relative to ``base_dir``),
    parameter names (and ``phi`` instead of ``M``), option names. Precedence: defaults < file < table.
    """
    _check_model(model, where)
    from_file, given, opts = {}, {}, {}
    names = set(PARAM_NAMES[model]) | ({"phi"} if model in ("csuh", "mcc") else set())
    for k, v in table.items():
        if k == "model":
            continue
        if k == "params":
            if not isinstance(v, str):
                raise ValueError(f"{where}: material.params = {v!r} must be a path string")
            p = Path(v)
            if base_dir is not None and not p.is_absolute():
                p = Path(base_dir) / p
            try:
                from_file = load_params_file(p, model)
            except ValueError as exc:
                raise ValueError(f"{where}: material.params: {exc}") from None
        elif k in names:
            given[k] = v
        elif k in OPTIONS[model]:
            opts[k] = v
        else:
            raise ValueError(f"{where}: material.{k} is not a key of model {model}; allowed: "
                             f"model, params, {', '.join(sorted(names) + list(OPTIONS[model]))}")
    if "M" in given or "phi" in given:
        from_file.pop("M", None)
        from_file.pop("phi", None)
    return check_params(model, {**from_file, **given}, where), check_options(model, opts, where)
