"""Scheduling policies behind one seam (see `torta.policy.base` for the contract)."""

from torta.policy.base import (BasePolicy, MicroAllocator, Policy, RequestInfo, RoundRobinAllocator,
                               SlotState, WarmLeastLoaded, validate_plan)
from torta.policy.baselines import LeastLoaded, LeastLoadedD2, LeastLoadedD4, LocalOnly, RoundRobin
from torta.policy.registry import get_policy, list_policies, register

for _cls in (RoundRobin, LocalOnly, LeastLoaded, LeastLoadedD2, LeastLoadedD4):
    register(_cls.name, _cls, _cls.description)

__all__ = ["BasePolicy", "MicroAllocator", "Policy", "RequestInfo", "RoundRobinAllocator", "SlotState",
           "WarmLeastLoaded", "validate_plan", "LeastLoaded", "LocalOnly", "RoundRobin", "get_policy",
           "list_policies", "register"]
