"""A plain registry of policy classes: `register(name, cls, description)`, `get_policy(name)`,
`list_policies()`. Built-ins register on import of `torta.policy`; the planner layer registers its own
(`torta.policy.register("ot", OTPolicy, "...")`)."""

from __future__ import annotations

import importlib
import importlib.util

from torta.errors import UnknownNameError

_REGISTRY: dict[str, tuple[type, str]] = {}
_NOT_DEFAULT: set[str] = set()  # registered with default_run=False
# Modules of other layers that register policies on import; loaded on first lookup if installed.
PLUGIN_MODULES: tuple[str, ...] = ("torta.planner.register", "torta.rl.learned", "torta.rl.horizon_ppo")
_plugins_loaded = False


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    import torta.policy  # noqa: F401 - registers the built-ins

    for mod in PLUGIN_MODULES:
        try:
            found = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(mod)


def register(name: str, cls: type, description: str, *, default_run: bool = True) -> None:
    """`default_run=False`: usable by name everywhere, but left out of `list_policies(default_run=True)`
    (the set `torta run` replays when no policies are named: ablation variants, policies that need inputs
    the main job's workload lacks)."""
    if not name or name != name.strip():
        raise ValueError(f"policy name {name!r} must be non-empty without surrounding spaces")
    prev = _REGISTRY.get(name)
    if prev is not None and prev[0] is not cls:
        raise ValueError(f"policy {name!r} is already registered to {prev[0].__qualname__}")
    _REGISTRY[name] = (cls, description)
    if not default_run:
        _NOT_DEFAULT.add(name)


def get_policy(name: str) -> type:
    if name not in _REGISTRY:
        _load_plugins()
    try:
        return _REGISTRY[name][0]
    except KeyError:
        raise UnknownNameError("policy", name, list(_REGISTRY)) from None


def list_policies(default_run: bool = False) -> list[tuple[str, str]]:
    """(name, one-line description), sorted by name; with `default_run`, only the policies registered for
    `torta run`'s default set."""
    _load_plugins()
    return sorted((n, d) for n, (_, d) in _REGISTRY.items() if not (default_run and n in _NOT_DEFAULT))
