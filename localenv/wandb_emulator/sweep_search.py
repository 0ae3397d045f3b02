"""How the emulator suggests a sweep's parameter sets, from the W&B sweep config.

Pure: no state, no I/O. ``grid`` walks every combination once, in the config's order (the
last parameter varies fastest); ``random`` draws each parameter independently from its
distribution; ``bayes`` is answered as ``random`` (the emulator has no model of the metric).
Draws are reproducible: parameter set N of a sweep comes from a generator seeded with the
sweep's seed and N, so a restarted emulator suggests the same sets.

A parameter is ``{"value": v}``, ``{"values": [...], "probabilities"?: [...]}``, a
distribution (``{"distribution": d, "min"/"max" or "mu"/"sigma" or "a"/"b", "q"?}``; min and
max without a distribution mean ``int_uniform`` for integers and ``uniform`` otherwise), or
nested ``{"parameters": {...}}``. A suggested set is W&B's command form:
``{name: {"value": v}}`` (a nested parameter's value is a dict).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping
from typing import Any

METHODS = ("grid", "random", "bayes")
# Set by the CLI for sweeps driven by a scheduler job; the emulator never suggests for them.
CUSTOM = "custom"

_TWO_BOUNDS = ("int_uniform", "uniform", "q_uniform", "log_uniform", "log_uniform_values", "q_log_uniform",
               "q_log_uniform_values", "inv_log_uniform", "inv_log_uniform_values")
_NORMAL = ("normal", "q_normal", "log_normal", "q_log_normal")
_BETA = ("beta", "q_beta")
DISTRIBUTIONS = ("constant", "categorical", "categorical_w_probabilities", *_TWO_BOUNDS, *_NORMAL, *_BETA)


class SearchError(ValueError):
    """A sweep config the emulator cannot suggest parameter sets for."""


def method_of(config: Mapping[str, Any]) -> str:
    return str(config.get("method") or "")


def _distribution(name: str, spec: Mapping[str, Any]) -> str:
    if "distribution" in spec:
        dist = str(spec["distribution"])
        if dist not in DISTRIBUTIONS:
            raise SearchError(f"parameter {name}: distribution {dist!r} is not one of {', '.join(DISTRIBUTIONS)}")
        return dist
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical"
    if "min" in spec and "max" in spec:
        ints = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    raise SearchError(f"parameter {name}: give value, values, min and max, or a distribution")


def _parameters(config: Mapping[str, Any], where: str = "parameters") -> Mapping[str, Any]:
    params = config.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise SearchError(f"{where} must be a mapping of parameter names")
    for name, spec in params.items():
        if not isinstance(spec, Mapping):
            raise SearchError(f"{where}.{name} must be a mapping")
    return params


def _number(name: str, spec: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SearchError(f"parameter {name}: {key} must be a number")
    return float(value)


# --- grid -----------------------------------------------------------------------------------


def _grid_options(name: str, spec: Mapping[str, Any]) -> list[Any]:
    if "parameters" in spec:
        sub = _parameters(spec, f"parameters.{name}.parameters")
        names = list(sub)
        choices = [_grid_options(f"{name}.{n}", sub[n]) for n in names]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]
    dist = _distribution(name, spec)
    if dist == "constant":
        return [spec["value"]]
    if dist == "categorical":
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise SearchError(f"parameter {name}: values must be a non-empty list")
        return list(values)
    if dist in ("int_uniform", "q_uniform"):
        low, high = _number(name, spec, "min"), _number(name, spec, "max")
        step = _number(name, spec, "q", 1.0)
        if step <= 0 or high < low:
            raise SearchError(f"parameter {name}: needs min <= max and q > 0")
        count = math.floor((high - low) / step + 1e-9) + 1
        as_int = dist == "int_uniform" and float(step).is_integer() and float(low).is_integer()
        return [int(low + i * step) if as_int else low + i * step for i in range(count)]
    raise SearchError(f"parameter {name}: grid search cannot enumerate distribution {dist!r} "
                      "(use values, value, int_uniform or q_uniform)")


def grid(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of a grid sweep, in order."""
    params = _parameters(config)
    names = list(params)
    choices = [_grid_options(n, params[n]) for n in names]
    return [{n: {"value": v} for n, v in zip(names, combo, strict=True)} for combo in itertools.product(*choices)]


# --- random ---------------------------------------------------------------------------------


def _quantize(value: float, spec: Mapping[str, Any], name: str, dist: str) -> float:
    if not dist.startswith("q_"):
        return value
    q = _number(name, spec, "q", 1.0)
    if q <= 0:
        raise SearchError(f"parameter {name}: q must be > 0")
    out = round(value / q) * q
    return int(out) if float(q).is_integer() else out


def _draw(name: str, spec: Mapping[str, Any], rng: random.Random) -> Any:
    if "parameters" in spec:
        sub = _parameters(spec, f"parameters.{name}.parameters")
        return {n: _draw(f"{name}.{n}", s, rng) for n, s in sub.items()}
    dist = _distribution(name, spec)
    if dist == "constant":
        return spec["value"]
    if dist in ("categorical", "categorical_w_probabilities"):
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SearchError(f"parameter {name}: values must be a non-empty list")
        weights = spec.get("probabilities")
        if weights is not None and (not isinstance(weights, list) or len(weights) != len(values)):
            raise SearchError(f"parameter {name}: probabilities must be a list as long as values")
        return rng.choices(values, weights=weights)[0]
    if dist in _TWO_BOUNDS:
        low, high = _number(name, spec, "min"), _number(name, spec, "max")
        if high < low:
            raise SearchError(f"parameter {name}: needs min <= max")
        if dist == "int_uniform":
            return rng.randint(int(low), int(high))
        if dist.endswith("_values"):
            if low <= 0:
                raise SearchError(f"parameter {name}: {dist} needs min > 0")
            low, high = math.log(low), math.log(high)
        value = rng.uniform(low, high)
        if "log_uniform" in dist:
            value = math.exp(value)
        if dist.startswith("inv_"):
            value = 1.0 / value
        return _quantize(value, spec, name, dist)
    if dist in _NORMAL:
        value = rng.gauss(_number(name, spec, "mu", 0.0), _number(name, spec, "sigma", 1.0))
        if "log_normal" in dist:
            value = math.exp(value)
        return _quantize(value, spec, name, dist)
    value = rng.betavariate(_number(name, spec, "a", 1.0), _number(name, spec, "b", 1.0))
    return _quantize(value, spec, name, dist)


def draw(config: Mapping[str, Any], seed: int, index: int) -> dict[str, Any]:
    """Parameter set number ``index`` of a random (or bayes) sweep with this seed."""
    rng = random.Random(f"{seed}:{index}")
    return {n: {"value": _draw(n, s, rng)} for n, s in _parameters(config).items()}


# --- the sweep as a whole -------------------------------------------------------------------


def run_cap(config: Mapping[str, Any]) -> int | None:
    cap = config.get("run_cap")
    return cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else None


def expected_runs(config: Mapping[str, Any]) -> int | None:
    """How many runs the sweep will have: the grid's size (capped by run_cap) or run_cap."""
    cap = run_cap(config)
    if method_of(config) == "grid":
        try:
            size = len(grid(config))
        except SearchError:
            return cap
        return min(size, cap) if cap else size
    return cap


def suggestions(config: Mapping[str, Any], seed: int, start: int) -> Iterator[dict[str, Any]]:
    """Parameter sets from number ``start`` on; a grid ends, random draws never do."""
    method = method_of(config)
    if method == "grid":
        yield from grid(config)[start:]
    elif method in ("random", "bayes"):
        for index in itertools.count(start):
            yield draw(config, seed, index)
    elif method == CUSTOM:
        raise SearchError("this sweep is driven by a custom scheduler job; W&B suggests no parameter sets for it")
    else:
        raise SearchError(f"sweep method {method or '(none)'!r} is not one of {', '.join(METHODS)}")


def warnings(config: Mapping[str, Any]) -> list[str]:
    """What W&B reports as config validation warnings at creation (the sweep is still created)."""
    method = method_of(config)
    if method not in (*METHODS, CUSTOM):
        return [f"method: {method or '(none)'!r} is not one of {', '.join(METHODS)}"]
    try:
        params = _parameters(config)
        if method == "grid":
            grid(config)
        else:
            for name, spec in params.items():
                _draw(name, spec, random.Random(0))
    except SearchError as exc:
        return [str(exc)]
    return []
