"""Range checks of hyperparameters, written once: the loss constructors and the example config
check (:func:`torchrl_leq.training.checks.check_config`) apply the same rules.

A rule is a callable ``rule(key, value)`` raising :class:`ConfigError` (a ``ValueError``) with a
one-line message that names the key and how to fix it. Each loss lists its rules in a class
attribute ``hyperparameter_rules`` (constructor argument -> rule); the config check applies them to
``loss.<argument>``, so ``loss.beta=2`` fails before any work with the message the constructor
would give.

Example:
    >>> rules = {"tau": UNIT_OPEN, "horizon": POSITIVE_INT}
    >>> check_hyperparameters(rules, tau=0.1, horizon=10)
    >>> check_hyperparameters(rules, tau=1.0)
    Traceback (most recent call last):
    ...
    torchrl_leq.objectives.hyperparameters.ConfigError: tau must lie in (0.0, 1.0), got 1.0 — ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

__all__ = [
    "ConfigError",
    "Rule",
    "number",
    "boolean",
    "choice",
    "check_hyperparameters",
    "UNIT",
    "UNIT_OPEN",
    "POSITIVE",
    "NON_NEGATIVE",
    "POSITIVE_INT",
    "NON_NEGATIVE_INT",
]

Rule = Callable[[str, Any], None]


class ConfigError(ValueError):
    """A hyperparameter or config value a user must change (one-line message)."""


def _range_message(key: str, value: Any, lo, hi, open_lo: bool, open_hi: bool) -> str:
    if hi is None:
        bound = f"> {lo}" if open_lo else f">= {lo}"
        return f"{key} must be {bound}, got {value} — pass {key}=<value {bound}>."
    lo_b, hi_b = "(" if open_lo else "[", ")" if open_hi else "]"
    return f"{key} must lie in {lo_b}{lo}, {hi}{hi_b}, got {value} — pass a value in that range."


def number(
    kind: type,
    lo: float | None = None,
    hi: float | None = None,
    *,
    open_lo: bool = False,
    open_hi: bool = False,
    nullable: bool = False,
) -> Rule:
    """Rule for an ``int`` or a finite ``float`` (ints accepted) in ``[lo, hi]`` (ends opened by
    ``open_lo`` / ``open_hi``, ``None`` = unbounded); ``nullable`` lets ``None`` through."""

    def check(key: str, value: Any) -> None:
        if value is None and nullable:
            return
        wanted = Integral if kind is int else Real
        if not isinstance(value, wanted) or isinstance(value, bool):
            what = "an integer" if kind is int else "a number"
            raise ConfigError(f"{key} must be {what}, got {value!r} — set {key}=<{what.split()[1]}>.")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be finite, got {value} — pass a finite number.")
        if lo is not None and (value <= lo if open_lo else value < lo):
            raise ConfigError(_range_message(key, value, lo, hi, open_lo, open_hi))
        if hi is not None and (value >= hi if open_hi else value > hi):
            raise ConfigError(_range_message(key, value, lo, hi, open_lo, open_hi))

    return check


def boolean(key: str, value: Any) -> None:
    """Rule: ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r} — set {key}=true|false.")


def choice(*options: Any) -> Rule:
    """Rule: one of ``options``."""

    def check(key: str, value: Any) -> None:
        if value not in options:
            raise ConfigError(
                f"{key} must be one of {list(options)}, got {value!r} — pass {key}=<one of them>."
            )

    return check


UNIT = number(float, 0.0, 1.0)
UNIT_OPEN = number(float, 0.0, 1.0, open_lo=True, open_hi=True)
POSITIVE = number(float, 0.0, open_lo=True)
NON_NEGATIVE = number(float, 0.0)
POSITIVE_INT = number(int, 1)
NON_NEGATIVE_INT = number(int, 0)


def check_hyperparameters(rules: Mapping[str, Rule], prefix: str = "", **values: Any) -> None:
    """Apply ``rules[name]`` to each ``name=value`` that has a rule; ``prefix`` is prepended to the
    name in messages (``"loss."`` for a config key)."""
    for name, value in values.items():
        rule = rules.get(name)
        if rule is not None:
            rule(prefix + name, value)
