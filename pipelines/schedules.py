"""The nightly schedule: replays the scenario set of `pipelines/nightly.toml`."""

import tomllib
from pathlib import Path

import dagster as dg

from pipelines.assets.replay import replay_partitions

NIGHTLY_FILE = Path(__file__).with_name("nightly.toml")


def nightly_runs(path: Path = NIGHTLY_FILE) -> list[tuple[str, float]]:
    """(partition key, hours) of every run in the nightly set."""
    doc = tomllib.loads(path.read_text())
    out = []
    for i, block in enumerate(doc.get("replays", [])):
        missing = [k for k in ("scenario", "workload", "policies", "seeds") if k not in block]
        if missing:
            raise ValueError(f"{path} [replays][{i}]: missing keys {missing}")
        for seed in block["seeds"]:
            for policy in block["policies"]:
                out.append((f"{block['scenario']}|{block['workload']}|{policy}|{int(seed)}",
                            float(block.get("hours", 0.0))))
    return out


def build_nightly(job) -> dg.ScheduleDefinition:
    @dg.schedule(job=job, cron_schedule="0 2 * * *", execution_timezone="UTC", name="nightly_replays")
    def nightly_replays(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        day = context.scheduled_execution_time.strftime("%Y-%m-%d")
        runs = nightly_runs()
        known = set(context.instance.get_dynamic_partitions(replay_partitions.name))
        new = sorted({k for k, _ in runs} - known)
        requests = [dg.RunRequest(run_key=f"{key}@{day}", partition_key=key,
                                  tags={"batch": f"nightly-{day}", "command": "schedule nightly_replays"},
                                  run_config={"ops": {"replay_run": {"config": {"hours": hours,
                                                                                "batch": f"nightly-{day}"}}}})
                    for key, hours in runs]
        if new:  # schedules cannot return partition requests: add them to the instance directly
            context.instance.add_dynamic_partitions(replay_partitions.name, new)
        return requests

    return nightly_replays
