"""A plain registry of policy classes: `register(name, cls, description)`, `get_policy(name)`,
`list_policies()`. Built-ins register on import of `torta.policy`; the planner layer registers its own
(`torta.policy.register("ot", OTPolicy, "...")`)."""

from __future__ import annotations

from torta.errors import UnknownNameError

_REGISTRY: dict[str, tuple[type, str]] = {}


def register(name: str, cls: type, description: str) -> None:
    if not name or name != name.strip():
        raise ValueError(f"policy name {name!r} must be non-empty without surrounding spaces")
    prev = _REGISTRY.get(name)
    if prev is not None and prev[0] is not cls:
        raise ValueError(f"policy {name!r} is already registered to {prev[0].__qualname__}")
    _REGISTRY[name] = (cls, description)


def get_policy(name: str) -> type:
    try:
        return _REGISTRY[name][0]
    except KeyError:
        raise UnknownNameError("policy", name, list(_REGISTRY)) from None


def list_policies() -> list[tuple[str, str]]:
    """(name, one-line description), sorted by name."""
    return sorted((n, d) for n, (_, d) in _REGISTRY.items())
