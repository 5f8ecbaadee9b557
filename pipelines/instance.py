"""The local Dagster instance used by `torta run` and `torta ui` (DAGSTER_HOME), the code location the
UI loads (`torta`), and runs executed here that the UI places under that location.

Why the origin matters: the UI's Overview -> Timeline (and a run's "Re-execute") place a run by its
`remote_job_origin` (code location, repository, job). Dagster's `execute_in_process` and
`create_run_for_job` leave it empty, and the Timeline drops runs without one ("No runs"). Runs started
by `torta run` and `torta experiment paper` are therefore created with the origin of job `<name>` in
code location `torta` (`job_origin`), which is the location `torta ui` serves (`workspace_file`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipelines.warehouse import REPO_ROOT

CODE_LOCATION = "torta"  # as [tool.dagster] code_location_name in pyproject.toml
DEFINITIONS_MODULE = "pipelines.definitions"
REPOSITORY = "__repository__"  # the repository name Dagster gives a module's `Definitions`


def dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or REPO_ROOT / ".dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text("telemetry:\n  enabled: false\n")
    return home


def workspace_file(home: Path | None = None) -> Path:
    """`$DAGSTER_HOME/workspace.yaml`: the definitions module as code location `torta` (what `torta ui`
    loads; the name the runs' origins carry)."""
    home = home or dagster_home()
    ws = home / "workspace.yaml"
    text = ("load_from:\n  - python_module:\n"
            f"      module_name: {DEFINITIONS_MODULE}\n"
            f"      location_name: {CODE_LOCATION}\n"
            f"      working_directory: {REPO_ROOT}\n")
    if not ws.exists() or ws.read_text() != text:
        ws.write_text(text)
    return ws


def job_origin(job_name: str):
    """The remote origin of job `job_name` in code location `torta` (`dagster._core.remote_origin`)."""
    from dagster._core.remote_origin import (
        ManagedGrpcPythonEnvCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    target = LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE,
                                  working_directory=str(REPO_ROOT))
    location = ManagedGrpcPythonEnvCodeLocationOrigin(target, CODE_LOCATION)
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY), job_name)


def execute_here(job_def, instance, *, run_config: Mapping | None = None, partition_key: str | None = None,
                 tags: Mapping[str, str] | None = None, asset_selection: Sequence | None = None):
    """`job_def.execute_in_process(...)` (in this process, in-process executor, same run tags and
    partition checks), but the run is created with its origin in code location `torta` (`job_origin`),
    so the UI's Timeline shows it. Returns Dagster's JobExecutionResult."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.definitions.partitions.context import partition_loading_context
    from dagster._core.execution.api import execute_run
    from dagster._core.execution.execute_in_process import merge_run_tags

    selection = list(asset_selection or [])
    job = job_def.as_ephemeral_job(resource_defs={}, input_values={}, asset_selection=selection or None)
    if partition_key and job.partitions_def:
        with partition_loading_context(dynamic_partitions_store=instance) as ctx:
            job.validate_partition_key(partition_key=partition_key, selected_asset_keys=set(selection),
                                       context=ctx)
    run_config = dict(run_config or {})
    if not run_config and job.partitioned_config and partition_key:
        run_config = dict(job.partitioned_config.get_run_config_for_partition_key(partition_key))
    run_tags = merge_run_tags(job_def=job_def, partition_key=partition_key, tags=tags,
                              asset_selection=selection, instance=instance, run_config=run_config)
    run = instance.create_run_for_job(job_def=job, run_config=run_config, tags=run_tags,
                                      asset_selection=frozenset(selection) or None,
                                      remote_job_origin=job_origin(job_def.name))
    return execute_run(InMemoryJob(job), run, instance)
