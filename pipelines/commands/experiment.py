"""`torta experiment paper|ablation|results`: the paper-reproduction experiment and its RESULTS.md; the
ablations of torta-horizon and their ABLATIONS.md."""

from __future__ import annotations

import json

import click

from torta.config import EVAL_PROTOCOL
from pipelines import warehouse as wh
from torta.commands.options import progress_option, want_progress


def _split(s: str | None) -> tuple[str, ...] | None:
    return None if s is None else tuple(x.strip() for x in s.split(",") if x.strip())


def _command_line(ctx: click.Context) -> str:
    """The command as typed, rebuilt from the options given on the command line (recorded in RESULTS.md)."""
    import shlex

    from click.core import ParameterSource

    parts = [ctx.command_path]
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or ctx.get_parameter_source(p.name) != ParameterSource.COMMANDLINE:
            continue
        v = ctx.params[p.name]
        if p.is_flag:
            parts.append(p.opts[0] if v else (p.secondary_opts[0] if p.secondary_opts else p.opts[0]))
        else:
            parts += [p.opts[0], shlex.quote(str(v))]
    return " ".join(parts)


@click.group()
def cli() -> None:
    """Reproduce the TORTA paper's comparison (arXiv:2507.10259) and publish the results."""


def _check_placement(executor: str | None, scheduler: str, storage: str | None) -> None:
    """Bad executor / scheduler / storage flags fail before anything runs (exit 2, one line)."""
    from pipelines import warehouse
    from pipelines.executors import check_scheduler

    from pipelines.executors import EXECUTORS

    if executor is not None and executor not in EXECUTORS:
        raise ValueError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if storage is not None:
        warehouse.check_storage_url(storage)
    if scheduler and executor != "dask":
        raise ValueError("--scheduler is for --executor dask")
    if executor == "dask":
        check_scheduler(scheduler)


@cli.command("paper")
@click.option("--reduced", is_flag=True, help="The CI-sized experiment (1 topology, 2 seeds, 3 policies, minutes).")
@click.option("--seeds", type=click.IntRange(1), default=None, help="Seeds per test day (default 1; reduced 2).")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Scored hours of each test and validation day (default 24: the whole day; reduced 0.05).")
@click.option("--warmup-hours", type=click.FloatRange(min=0), default=None,
              help=f"Unscored hours before each window, through the same policy (default {EVAL_PROTOCOL.warmup_h:g}; "
                   "reduced 0.25; whole 15-minute slots).")
@click.option("--state-refresh-s", type=click.FloatRange(min=0), default=None,
              help=f"Gateways' load-report interval, s (default {EVAL_PROTOCOL.state_refresh_s:g}; 0 = instant "
                   "global state for every policy).")
@click.option("--export", "export_dir", default=None,
              help="Also write each finished cell's rows here, and import them from here when resuming "
                   "(default docs/data/<name>; none for --reduced).")
@click.option("--fresh", is_flag=True, help="Replay every cell, even those already in the warehouse "
              "(default: resume, skipping cells whose every policy has a row on the same protocol).")
@click.option("--days", type=click.IntRange(1, len(EVAL_PROTOCOL.test_days)), default=None,
              help=f"Test days from day {EVAL_PROTOCOL.first_test_day} (default {len(EVAL_PROTOCOL.test_days)}).")
@click.option("--scenarios", default=None, help="Comma-separated topologies (default abilene,geant,chinanet).")
@click.option("--workloads", default=None, help="Comma-separated multi-day workloads (default servegen-mix-14d).")
@click.option("--traces", default=None, help="Comma-separated hour traces (default azure-2023-conv,azure-2023-code).")
@click.option("--policies", default=None, help="Comma-separated policies (default: every baseline and TORTA variant).")
@click.option("--redo-policies", "redo", default=None,
              help="Comma-separated policies replayed again in every cell: their rows of this experiment are deleted "
                   "first (warehouse and --export files), the other policies' rows kept. For a policy whose code "
                   "changed; if interrupted, resume without this option.")
@click.option("--batch", default=None, help="Batch name (default <name>-<UTC time>).")
@click.option("--name", default=None, help="Experiment name (default paper; paper-reduced with --reduced): "
              "`torta experiment results --experiment NAME` renders its latest batch.")
@click.option("--results/--no-results", default=True, show_default=True, help="Write docs/RESULTS.md afterwards.")
@click.option("--out", default="docs/RESULTS.md", show_default=True)
@click.option("--figures", default="docs/figures", show_default=True)
@click.option("--warehouse", "database", default=None, help=f"Warehouse file. {wh.WAREHOUSE_HELP}")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Cells run this many at a time, one worker process each (e.g. 2 on a 2-core machine for whole "
                   "days). Each out-of-process cell costs about 18 s of CPU to start (docs/SCALE-OUT.md): "
                   "for --reduced and short windows 1 is faster.")
@click.option("--executor", default=None, metavar="multiprocess|dask",
              help="Where the cells' runs execute: multiprocess (Dagster's multiprocess executor, --workers at a "
                   "time; the default with --workers > 1, else one after another in this process) or dask (the "
                   "Dask cluster at --scheduler; docs/SCALE-OUT.md).")
@click.option("--scheduler", default="", help="Dask scheduler address for --executor dask, tcp://HOST:PORT.")
@click.option("--storage", default=None,
              help="Where the warehouse's partitions go: a (shared) directory, file:///DIR or s3://BUCKET/PREFIX "
                   "(recorded beside the warehouse file; default <warehouse dir>/parquet).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (the run summary).")
@progress_option
@click.pass_context
def paper(ctx, reduced, seeds, hours, warmup_hours, state_refresh_s, export_dir, fresh, days, scenarios, workloads,
          traces, policies, redo, batch, name, results, out, figures, database, workers, executor, scheduler, storage,
          as_json, progress) -> None:
    """Run the experiment end to end (Dagster materializations into the warehouse); prints the plan
    and a run-time estimate first, progress to stderr."""
    from pipelines.experiment import run_paper, write_results
    from torta.runs.experiment.definition import paper_experiment

    _check_placement(executor, scheduler, storage)

    exp = paper_experiment(reduced=reduced, seeds=seeds, hours=hours, days=days, scenarios=_split(scenarios),
                           workloads=_split(workloads), traces=_split(traces), policies=_split(policies),
                           warmup_h=warmup_hours, state_refresh_s=state_refresh_s)
    if name:
        from dataclasses import replace

        exp = replace(exp, name=name)
    if export_dir is None and not reduced:
        export_dir = f"docs/data/{exp.name}"
    placement = {k: v for k, v in (("executor", executor), ("scheduler", scheduler), ("storage", storage)) if v}
    summary = run_paper(exp, database, batch, workers=workers, command=_command_line(ctx),
                        progress=want_progress(progress), export_dir=export_dir or None, resume=not fresh,
                        redo=_split(redo) or (), **placement)
    if results:
        summary["results"] = write_results(database, exp.name, summary["batch"], out, figures,
                                           wall_s=summary["wall_s"])["results"]
    if as_json:
        click.echo(json.dumps(summary, default=str))
    else:
        click.echo(f"batch {summary['batch']}: {summary['cells']} cells in {summary['wall_s'] / 60:.1f} min"
                   + (f"; {summary['results']}" if results else ""))


@cli.command("ablation")
@click.option("--seeds", type=click.IntRange(1), default=None, help="Seeds per test day (default 1).")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Scored hours of each test day (default 24: the whole day).")
@click.option("--warmup-hours", type=click.FloatRange(min=0), default=None,
              help=f"Unscored hours before each window (default {EVAL_PROTOCOL.warmup_h:g}).")
@click.option("--state-refresh-s", type=click.FloatRange(min=0), default=None,
              help=f"Gateways' load-report interval, s (default {EVAL_PROTOCOL.state_refresh_s:g}).")
@click.option("--export", "export_dir", default="docs/data/ablation", show_default=True,
              help="Also write each finished cell's rows here, and import them from here when resuming ('' = none).")
@click.option("--fresh", is_flag=True, help="Replay every cell, even those already in the warehouse.")
@click.option("--days", type=click.IntRange(1, len(EVAL_PROTOCOL.test_days)), default=None,
              help=f"Test days from day {EVAL_PROTOCOL.first_test_day} (default {len(EVAL_PROTOCOL.test_days)}).")
@click.option("--scenarios", default=None, help="Comma-separated topologies (default abilene,geant,chinanet; run in "
              "that order).")
@click.option("--workloads", default=None, help="Comma-separated multi-day workloads (default servegen-mix-14d).")
@click.option("--policies", default=None, help="Comma-separated: torta-horizon and the variants to pair against it "
              "(default torta-horizon and every registered ablation of it; torta-horizon-ppo only when asked for).")
@click.option("--redo-policies", "redo", default=None,
              help="Comma-separated policies replayed again in every cell: their rows of this experiment are deleted "
                   "first (warehouse and --export files), the other policies' rows kept. For a policy whose code "
                   "changed; if interrupted, resume without this option.")
@click.option("--batch", default=None, help="Batch name (default ablation-<UTC time>, or the resumed one's).")
@click.option("--results/--no-results", default=True, show_default=True, help="Write docs/ABLATIONS.md afterwards.")
@click.option("--out", default="docs/ABLATIONS.md", show_default=True)
@click.option("--paper-export", default="docs/data/paper", show_default=True,
              help="The paper experiment's committed rows (the PPO on / off pair in ABLATIONS.md).")
@click.option("--warehouse", "database", default=None, help=f"Warehouse file. {wh.WAREHOUSE_HELP}")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Cells run this many at a time, one worker process each.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (the run summary).")
@progress_option
@click.pass_context
def ablation(ctx, seeds, hours, warmup_hours, state_refresh_s, export_dir, fresh, days, scenarios, workloads,
             policies, redo, batch, results, out, paper_export, database, workers, as_json, progress) -> None:
    """The ablations of torta-horizon on the evaluation protocol (issue 18 item 5): H = 1 / 4 / 8 / 12,
    oracle / forecast / persistence demand, with and without pre-loading, each variant paired against
    torta-horizon per test cell; resumable like `paper` (rows per cell in the warehouse and under --export).
    Prints the plan and a run-time estimate first, progress to stderr; then docs/ABLATIONS.md."""
    from pipelines.experiment import run_paper, write_ablations
    from torta.runs.experiment.definition import ablation_experiment

    exp = ablation_experiment(seeds=seeds, hours=hours, days=days, scenarios=_split(scenarios),
                              workloads=_split(workloads), policies=_split(policies), warmup_h=warmup_hours,
                              state_refresh_s=state_refresh_s)
    summary = run_paper(exp, database, batch, workers=workers, command=_command_line(ctx),
                        progress=want_progress(progress), export_dir=export_dir or None, resume=not fresh,
                        redo=_split(redo) or ())
    if results:
        summary["results"] = write_ablations(database, summary["batch"], out, wall_s=summary["wall_s"],
                                             paper_export=paper_export or None,
                                             export_dir=export_dir or None)["results"]
    if as_json:
        click.echo(json.dumps(summary, default=str))
    else:
        click.echo(f"batch {summary['batch']}: {summary['cells']} cells in {summary['wall_s'] / 60:.1f} min"
                   + (f"; {summary['results']}" if results else ""))


@cli.command("results")
@click.option("--experiment", default="paper", show_default=True, help="paper | paper-reduced | ablation")
@click.option("--batch", default=None, help="Batch (default: the experiment's latest).")
@click.option("--out", default=None, help="Default docs/RESULTS.md (ablation: docs/ABLATIONS.md).")
@click.option("--export", "export_dir", default="docs/data/ablation", show_default=True,
              help="ablation: its committed rows, imported first where the warehouse lacks them ('' = none).")
@click.option("--paper-export", default="docs/data/paper", show_default=True,
              help="ablation: the paper experiment's committed rows (the PPO on / off pair; '' = none).")
@click.option("--figures", default="docs/figures", show_default=True)
@click.option("--wall-s", type=float, default=None, help="Measured run time of the batch, recorded in the text.")
@click.option("--note", default="", help="How the batch ran (recorded in the text).")
@click.option("--warehouse", "database", default=None, help=f"Warehouse file. {wh.WAREHOUSE_HELP}")
@click.option("--json", "as_json", is_flag=True)
def results(experiment, batch, out, export_dir, paper_export, figures, wall_s, note, database, as_json) -> None:
    """Render RESULTS.md and its figures from the warehouse's runs of the experiment (ABLATIONS.md for
    `--experiment ablation`)."""
    from pipelines.experiment import write_ablations, write_results

    if experiment == "ablation":
        r = write_ablations(database, batch, out or "docs/ABLATIONS.md", wall_s=wall_s,
                            paper_export=paper_export or None, export_dir=export_dir or None)
    else:
        r = write_results(database, experiment, batch, out or "docs/RESULTS.md", figures, wall_s=wall_s, note=note)
    click.echo(json.dumps(r) if as_json else f"wrote {r['results']} ({r['runs']} runs of batch {r['batch']})")
