"""The HTML report, built from a real warehouse: structure, figures, and rendering in headless
Chromium (skipped with a visible reason where Chromium is not installed; .ci/run installs it)."""

import re
import shutil
import subprocess

import dagster as dg
import numpy as np
import pytest
from matplotlib import image as mpimg

from pipelines.assets import fleet, replay
from pipelines.report import build_report
from pipelines.resources import WarehouseResource

FIGURES = ("response_cdf", "ttft_cdf", "tpot_cdf", "slo_goodput", "cost_vs_response", "load_balance", "utilisation",
           "cost_breakdown", "plan_shares", "flows")


@pytest.fixture(scope="module")
def report_index(tmp_path_factory):
    db = tmp_path_factory.mktemp("wh") / "torta.duckdb"
    res = {"warehouse": WarehouseResource(database=str(db))}
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([fleet.topology, fleet.fleet, fleet.price_curves], partition_key="abilene",
                          resources=res, instance=instance).success
    keys = [f"abilene|azure-2023-code|{p}|{s}" for p in ("least-loaded", "local-only", "torta-ot") for s in (0, 1)]
    instance.add_dynamic_partitions("replays", keys)
    for key in keys:
        assert dg.materialize([replay.replay_run], partition_key=key, resources=res, instance=instance,
                              run_config={"ops": {"replay_run": {"config": {"hours": 0.1, "batch": "t"}}}}).success
    return build_report(db, db.parent / "report")


def test_report_structure_and_figures(report_index):
    html = report_index.read_text()
    assert "<table>" in html and "least-loaded" in html and "local-only" in html
    for fig in FIGURES:
        assert f"figures/{fig}.png" in html
        img = mpimg.imread(report_index.parent / "figures" / f"{fig}.png")
        assert img.shape[0] > 200 and img.shape[1] > 300
        # a drawn figure, not a blank canvas: many distinct colours
        assert len(np.unique(img.reshape(-1, img.shape[-1])[:, :3].round(2), axis=0)) > 20


def test_comparison_table_is_readable(report_index):
    html = report_index.read_text()
    table = html[html.index("<table>"):html.index("</table>")]
    assert "e+" not in table and "e-0" not in table  # human numbers, no exponents
    assert len(re.findall(r"<th[ >]", table)) <= 12  # fits the page: a few columns, units in the header
    assert "± " in table and "<span class=u>s</span>" in table


def test_policy_styles_distinct_for_many_policies():
    from torta.report.figures import policy_styles

    names = [f"policy-{i:02d}" for i in range(20)]
    styles = policy_styles(names)
    assert len({(s["color"], s["ls"]) for s in styles.values()}) == 20
    assert policy_styles(names[:5]) == {k: styles[k] for k in names[:5]}  # same look in every figure


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (Debian package `chromium`; .ci/run installs it)")
def test_report_renders_in_headless_chromium(report_index, tmp_path):
    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1200,9000",
           f"--screenshot={shot}", report_index.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.exists(), "Chromium wrote no screenshot"
    img = mpimg.imread(shot)[:, :, :3]
    # the figures' blue (#4c72b0 data centres and energy bars) shows only if the images loaded
    blue = np.all(np.abs(img - np.array([0x4C, 0x72, 0xB0]) / 255) < 0.06, axis=-1)
    assert blue.sum() > 500
    # and the page is not blank
    assert len(np.unique(img.reshape(-1, 3).round(2), axis=0)) > 50


def test_slot_series_are_on_the_scored_windows_clock_after_a_warm_up(tmp_path):
    """A replay with a warm-up records its slots on the replay clock (the first scored slot starts at
    `warmup_s`); the report shifts them to the scored window and drops the warm-up's plan slots, so the
    time plots (load balance, utilisation per region, macro plan) are not empty for `torta run`'s
    default (1 h after a 1 h warm-up)."""
    from pipelines.report import gather

    db = tmp_path / "wh" / "torta.duckdb"
    res = {"warehouse": WarehouseResource(database=str(db))}
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([fleet.topology, fleet.fleet, fleet.price_curves], partition_key="abilene",
                          resources=res, instance=instance).success
    key = "abilene|servegen-mix-14d|torta-ot-last|0"
    instance.add_dynamic_partitions("replays", [key])
    cfg = {"hours": 0.25, "warmup_hours": 0.25, "batch": "warm"}
    assert dg.materialize([replay.replay_run], partition_key=key, resources=res, instance=instance,
                          run_config={"ops": {"replay_run": {"config": cfg}}}).success
    inputs = gather(db, "warm")
    for frame in (inputs.load_over_time, inputs.utilisation):
        assert frame.height and frame["t_start_s"].min() == 0.0  # the first scored slot, at 0
    assert inputs.window_h == 0.25
    out = build_report(db, tmp_path / "report", "warm")
    from matplotlib.colors import to_rgb

    from torta.report.figures import policy_styles

    colour = np.array(to_rgb(policy_styles(["torta-ot-last"])["torta-ot-last"]["color"]))
    img = mpimg.imread(out.parent / "figures" / "load_balance.png")[:, :, :3]
    drawn = np.all(np.abs(img - colour) < 0.05, axis=-1).sum()
    assert drawn > 40  # the policy's point(s), not only its legend entry
