"""Multi-day workloads (ServeGen rates -> requests) and regional demand series."""

from torta.workload.build import (WorkloadPlan, build_workload, iter_workload, metadata, prepare,
                                  regional_rates)
from torta.workload.demand import demand_series
from torta.workload.registry import CLASS_MODEL, WORKLOADS, WorkloadSpec, get_spec, list_workloads

__all__ = ["CLASS_MODEL", "WORKLOADS", "WorkloadPlan", "WorkloadSpec", "build_workload",
           "demand_series", "get_spec", "iter_workload", "list_workloads", "metadata", "prepare", "regional_rates"]
