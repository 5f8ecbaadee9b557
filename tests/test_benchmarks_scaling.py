"""The scaling harness on tiny sizes: every series measured, PERFORMANCE.md rendered with the machine."""

import json

import pytest
from click.testing import CliRunner

from benchmarks.scaling import DIARY_MARKER, _plots, cli, diary_of, machine, planner_case, render_performance


def test_machine_is_described():
    m = machine()
    assert m["nproc"] >= 1 and m["python"].startswith("3.") and m["numpy"]


def test_planner_case_and_render_in_process(tmp_path):
    r = planner_case({"regions": 4, "slots": 3, "seed": 0})
    assert r["regions"] == 4 and r["ms_per_slot_median"] > 0
    doc = {"generated_at": "now", "machine": machine(), "config": {"fleet_requests": 10}, "trace": [],
           "fleet": [], "planner": [dict(r, repeats=1, load_avg_1m=0.5), dict(r, regions=8, repeats=1,
                                                                            load_avg_1m=0.5)],
           "forecast": [], "total_wall_s": 1.0, "load_avg_end": [0.1, 0.2, 0.3]}
    figs = _plots(doc, tmp_path / "fig", tmp_path)
    text = render_performance(doc, figs)
    assert "Planner time against the number of regions" in text and "| 8 |" in text
    assert "(fig/perf_planner.png)" in text and "Replay throughput" not in text


@pytest.mark.slow
def test_scaling_harness_tiny(tmp_path):
    out = tmp_path / "docs" / "PERFORMANCE.md"
    res = CliRunner().invoke(cli, ["--quick", "--trace-sizes", "300,600", "--fleet-sizes", "10", "--regions", "5",
                                   "--series", "1", "--out", str(out), "--figures", str(tmp_path / "fig"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["target_requests"] for r in doc["trace"]] == [300, 600]
    assert all(abs(r["requests"] - r["target_requests"]) <= 0.05 * r["target_requests"] for r in doc["trace"])
    assert all(r["requests_per_s"] > 0 and r["load_avg_1m"] >= 0 for r in doc["trace"] + doc["fleet"])
    assert doc["fleet"][0]["servers"] == 10 and doc["planner"][0]["regions"] == 5
    assert doc["forecast"][0]["series"] == 1 and doc["forecast"][0]["wall_s"] > 0
    text = out.read_text()
    assert "## Machine" in text and "CPUs" in text and "load average" in text
    assert f"| {doc['trace'][1]['requests']:,} |" in text
    assert (tmp_path / "fig" / "perf_trace.png").exists()
    assert json.loads((out.parent / "performance.json").read_text())["machine"]["nproc"] >= 1


def test_render_lists_what_did_not_run():
    doc = {"generated_at": "x", "machine": machine(), "config": {"fleet_requests": 1}, "trace": [],
           "fleet": [], "planner": [], "forecast": [], "skipped": ["10,000,000-request trace: not in this run"]}
    assert "## Not run" in render_performance(doc) and "10,000,000" in render_performance(doc)


def test_render_keeps_the_hand_written_diary(tmp_path):
    doc = {"generated_at": "now", "machine": machine(), "config": {}, "trace": [], "fleet": [], "planner": [],
           "forecast": [], "total_wall_s": 1.0, "load_avg_end": [0.1]}
    page = tmp_path / "PERFORMANCE.md"
    page.write_text(render_performance(doc, {}, "## Diary\n\nmeasured by hand\n"))
    assert diary_of(page) == "## Diary\n\nmeasured by hand"
    again = render_performance(doc, {}, diary_of(page))
    assert again.endswith(DIARY_MARKER + "\n\n## Diary\n\nmeasured by hand")
    assert diary_of(tmp_path / "missing.md") == ""
