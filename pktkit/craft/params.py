"""Scenario parameters: typed defaults, ``--set KEY=VALUE`` overrides, and their validation.

Every scenario declares a frozen dataclass of parameters. Values arriving from the command line
are strings; :func:`apply_overrides` converts each to the field's type with the validator that
field names in its metadata, so that a bad value yields a one-line :class:`UsageError` that
names the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pktkit.errors import UsageError

P = TypeVar("P")

VNI_MAX = 0xFFFFFF


def check_ip(name: str, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise UsageError(
            f"{name}={value!r} is not an IP address; "
            "give an IPv4 (10.0.0.1) or IPv6 (fd00::1) address"
        ) from None


def check_cidr(name: str, value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise UsageError(
            f"{name}={value!r} is not a network in CIDR form; give one such as 10.0.0.0/24 "
            "with no host bits set"
        ) from None


def check_range(name: str, value: Any, low: int, high: int, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high or isinstance(value, bool):
        raise UsageError(f"{name}={value!r} is out of range; a {what} is {low}..{high}")
    return number


def check_vni(name: str, value: Any) -> int:
    return check_range(name, value, 0, VNI_MAX, "VNI")


def check_port(name: str, value: Any) -> int:
    return check_range(name, value, 1, 65535, "port")


def check_positive(name: str, value: Any) -> int:
    return check_range(name, value, 1, 10**9, "count")


def check_float(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name}={value!r} is not a number") from None


def field(default: Any, check: Callable[[str, Any], Any], help: str) -> Any:
    """A parameter field: its default, its validator and a one-line help text."""
    return dataclasses.field(default=default, metadata={"check": check, "help": help})


def validate(params: P) -> P:
    """Run every field's validator (defaults are validated too: a typo there is a bug)."""
    for spec in dataclasses.fields(params):  # type: ignore[arg-type]
        check = spec.metadata.get("check")
        if check is not None:
            check(spec.name, getattr(params, spec.name))
    return params


def apply_overrides(params: P, overrides: Mapping[str, str]) -> P:
    """Return ``params`` with ``overrides`` (strings from ``--set``) converted and validated."""
    known = {spec.name: spec for spec in dataclasses.fields(params)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in known:
            allowed = ", ".join(sorted(known)) or "none"
            raise UsageError(f"--set {key}: unknown parameter; this scenario takes: {allowed}")
        changes[key] = known[key].metadata["check"](key, raw)
    return validate(dataclasses.replace(params, **changes))  # type: ignore[type-var]


def describe(params: Any) -> dict[str, Any]:
    """Parameters as JSON-ready values (for truth.json and ``generate --list``)."""
    return {spec.name: getattr(params, spec.name) for spec in dataclasses.fields(params)}
