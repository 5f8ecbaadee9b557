"""The executors a sweep's runs use: Dagster's multiprocess executor (one machine) and Dask distributed
through dagster-dask (beyond it: a scheduler at `tcp://HOST:PORT`, its workers on a laptop, a Slurm
cluster through dask-jobqueue or Kubernetes through dask-kubernetes; docs/SCALE-OUT.md).

Why dagster-dask rather than dagster-ray: dagster-dask 0.29.27 is released with Dagster 1.13.27 (it pins
`dagster==1.13.27`, the version this project pins) and is Dagster's own executor integration: each step
becomes a Dask future on any Dask cluster, and Dask's scheduler reschedules a step whose worker died.
dagster-ray 0.4.x is a separately versioned community package whose executor needs a Ray cluster and
its job-submission API; Dask's scheduler and workers are two plain commands (`dask scheduler`, `dask
worker`) and dask-jobqueue / dask-kubernetes bring them up on Slurm and Kubernetes.

`CellDaskExecutor` differs from dagster-dask's `DaskExecutor` in two things, both found here with
dagster-dask 0.29.27 on distributed 2026.8.0:
- the Dask task key. dagster-dask names a step's task `<job>.<step>`; Dask treats tasks with one key as
  one task, so the sweep's concurrent runs of one job (one run per cell, each with the single step
  `experiment_cell`) would collapse onto one task on a shared scheduler. Here the key carries the run id,
  and the task is impure;
- the arguments travel wrapped (`_Args`). Dask's task spec walks tuples in a task's arguments, and a
  `DagsterRun` is a NamedTuple: on a partitioned run that walk reaches a partitions subset record and
  fails ("Iteration is not allowed on `@record` KeyRangesPartitionsSubset"), so dagster-dask's executor
  as released cannot run a partition of an asset.
The step itself runs on the worker through dagster-dask's own `query_on_dask_worker`.
"""

from __future__ import annotations

import dask.distributed
import dagster as dg
from dagster._core.events import DagsterEvent
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._utils import iterate_with_context
from dagster._core.errors import raise_execution_interrupts
from dagster_dask.executor import DaskExecutor, get_dask_resource_requirements, query_on_dask_worker

EXECUTORS = ("multiprocess", "dask")


class _Args:
    """A task's arguments as one opaque object (Dask does not walk into it)."""

    def __init__(self, *args):
        self.args = args


def _step_on_worker(dependencies, args: _Args):
    return query_on_dask_worker(dependencies, *args.args)


class CellDaskExecutor(DaskExecutor):
    """dagster-dask's executor on an existing scheduler, one Dask task per step keyed by run id."""

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan):
        if not plan_context.instance.is_persistent:
            raise dg.DagsterInvariantViolationError("Dask execution requires a persistent DagsterInstance")
        run_id = plan_context.dagster_run.run_id
        with dask.distributed.Client(self.cluster_configuration["address"]) as client:
            futures: dict[str, dask.distributed.Future] = {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    deps = [futures[k] for si in step.step_inputs for k in si.dependency_keys]
                    args = _Args(plan_context.reconstructable_job, plan_context.dagster_run, plan_context.run_config,
                                 [step.key], plan_context.instance.get_ref(), execution_plan.known_state)
                    futures[step.key] = client.submit(
                        _step_on_worker, deps, args, key=f"{plan_context.job_name}.{step.key}.{run_id}",
                        pure=False, resources=get_dask_resource_requirements(step.tags))
            done = dask.distributed.as_completed(list(futures.values()), with_results=True)
            for _future, events in iterate_with_context(raise_execution_interrupts, done):
                for event in events:
                    yield dg._check.inst(event, DagsterEvent)


@dg.executor(name="dask_cells", requirements=dg.multiple_process_executor_requirements(),
             config_schema={"address": dg.Field(str, description="Dask scheduler, tcp://HOST:PORT")})
def cell_dask_executor(init_context) -> CellDaskExecutor:
    return CellDaskExecutor("existing", {"address": init_context.executor_config["address"]})


def executor_def(name: str, scheduler: str = "", concurrency: int = 1) -> dg.ExecutorDefinition:
    """`multiprocess`: Dagster's multiprocess executor (spawned step processes, `concurrency` steps
    at a time); `dask`: the cell Dask executor on the scheduler at `scheduler`."""
    if name == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": int(concurrency),
                                                    "start_method": {"spawn": {}}})
    if name == "dask":
        return cell_dask_executor.configured({"address": scheduler})
    raise ValueError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")


def check_scheduler(address: str, timeout_s: float = 10.0) -> int:
    """Connect to the Dask scheduler; returns the cluster's worker threads (0: no worker yet). Raises
    ValueError naming the address when it is malformed or does not answer within `timeout_s`."""
    if not address:
        raise ValueError("--executor dask needs --scheduler tcp://HOST:PORT (a running `dask scheduler`)")
    if not address.startswith(("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")):
        raise ValueError(f"--scheduler {address!r}: expected tcp://HOST:PORT")
    try:
        with dask.distributed.Client(address, timeout=timeout_s) as client:
            return int(sum(client.nthreads().values()))
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"--scheduler {address}: no Dask scheduler answered within {timeout_s:g} s "
                         f"({type(exc).__name__})") from None
