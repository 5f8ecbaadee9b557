"""`torta fleet ...`: scenarios, fleets and the GPU latency model."""

from __future__ import annotations

import sys

import click

from torta import strictjson


def _emit(doc) -> None:
    click.echo(strictjson.dumps(doc, indent=2, sort_keys=False))


@click.group()
def cli() -> None:
    """Inspect scenarios, fleets and the GPU latency model."""


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def list_cmd(as_json: bool) -> None:
    """List shipped scenarios."""
    from torta.fleet.scenario import list_scenarios

    names = list_scenarios()
    if as_json:
        _emit(names)
    else:
        click.echo("\n".join(names))


@cli.command("show")
@click.argument("scenario")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--prompt-tokens", default=1155.0, show_default=True,
              help="Mean prompt tokens for the capacity estimate (Azure 2023 conv mean).")
@click.option("--output-tokens", default=211.0, show_default=True,
              help="Mean output tokens for the capacity estimate (Azure 2023 conv mean).")
def show_cmd(scenario: str, as_json: bool, prompt_tokens: float, output_tokens: float) -> None:
    """Regions, servers, capacity, price range and latency range of SCENARIO (name or .toml)."""
    from torta.fleet.summary import scenario_summary

    doc = scenario_summary(scenario, prompt_tokens, output_tokens)
    if as_json:
        _emit(doc)
        return
    click.echo(f"scenario {doc['scenario']}: {doc['description']}")
    click.echo(f"  regions {doc['regions']} ({doc['dc_regions']} with data centres), "
               f"servers {doc['servers']}, GPUs {doc['gpus']}, models {', '.join(doc['models'])}")
    lat = doc["latency_ms"]
    click.echo(f"  latency ms (one-way, off-diagonal): min {lat['min']:.1f} "
               f"median {lat['median']:.1f} max {lat['max']:.1f}")
    pr = doc["price_usd_per_mwh"]
    click.echo(f"  price USD/MWh (hourly 2023, cleaned): min {pr['min']:.1f} "
               f"mean {pr['mean']:.1f} max {pr['max']:.1f}")
    click.echo(f"  capacity req/s at P={prompt_tokens:g}, O={output_tokens:g} "
               "(initial models / every allowed server): "
               + ", ".join(f"{m} {c['initial']:.1f}/{c['allowed']:.1f}"
                           for m, c in doc["capacity_requests_per_s"].items()))
    click.echo(f"  {'region':<16} {'market':<12} {'weight':>6} {'srv':>4} {'gpus':>5} "
               f"{'cap r/s':>8} {'USD/MWh':>8}")
    for r in doc["region_table"]:
        click.echo(f"  {r['name'][:16]:<16} {r['market']:<12} {r['origin_weight']:>6.3f} "
                   f"{r['servers']:>4} {r['gpus']:>5} {r['capacity_requests_per_s']:>8.1f} "
                   f"{r['price_mean_usd_per_mwh']:>8.1f}")


@cli.command("perf")
@click.option("--model", "model", help="Model name, e.g. llama2-70b.")
@click.option("--gpu", help="GPU name, e.g. H100.")
@click.option("--tp", type=int, help="Tensor-parallel degree (GPUs per replica).")
@click.option("--prompt-tokens", type=int, default=1024, show_default=True,
              help="Prompt tokens per request in the prefill batch.")
@click.option("--batch", type=int, default=1, show_default=True,
              help="Requests in the batch (prefill of batch x prompt tokens; decode batch).")
@click.option("--context-tokens", type=float, default=None,
              help="Mean context per sequence for decode [default: prompt tokens].")
@click.option("--check", is_flag=True, help="Report the fit error against the measured tables.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def perf_cmd(model, gpu, tp, prompt_tokens, batch, context_tokens, check, as_json) -> None:
    """Latency of one (model, GPU, tp) replica, or the fit error with --check."""
    if check:
        from torta.fleet.check import perf_check

        print("fitting Splitwise and Vidur tables...", file=sys.stderr)
        doc = perf_check()
        if as_json:
            _emit(doc)
            return
        for table, res in doc["tables"].items():
            for phase in ("prefill", "decode"):
                e = res[phase]
                loo = (f", LOO median {e['loo_median_abs_pct_error']:.1f} % max "
                       f"{e['loo_max_abs_pct_error']:.1f} %" if "loo_median_abs_pct_error" in e else "")
                click.echo(f"{table:<10} {phase:<8} median {e['median_abs_pct_error']:.1f} % "
                           f"max {e['max_abs_pct_error']:.1f} %{loo} ({e['points']} points)")
            for ex in res.get("excluded", []):
                click.echo(f"  excluded {ex['config']}: {ex['reason']}")
        return
    missing = [n for n, v in (("--model", model), ("--gpu", gpu), ("--tp", tp)) if v is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or use --check)")
    from torta.fleet.perf import MAX_BATCH, default_perf_model

    pm = default_perf_model()
    r = pm.replica(model, gpu, tp)  # raises UnknownNameError / ModelDoesNotFitError
    ctx = float(prompt_tokens if context_tokens is None else context_tokens)
    doc = {
        "model": model, "gpu": gpu, "tp": tp, "tier": r.tier,
        "prompt_tokens": prompt_tokens, "batch": batch, "context_tokens": ctx,
        "prefill_ms": round(pm.prefill_ms(model, gpu, tp, prompt_tokens * batch,
                                          float(batch) * prompt_tokens ** 2), 4),
        "decode_ms_per_iter": round(pm.decode_ms_per_iter(model, gpu, tp, batch, ctx), 4),
        "max_batch": pm.max_batch(model, gpu, tp, int(ctx)),
        "max_batch_cap": MAX_BATCH,
        "kv_capacity_tokens": pm.kv_capacity_tokens(model, gpu, tp),
        "load_s": round(pm.load_s(model, gpu, tp), 3),
    }
    if as_json:
        _emit(doc)
    else:
        for k, v in doc.items():
            click.echo(f"{k:<20} {v}")
