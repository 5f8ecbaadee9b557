"""`torta bench policies` (torta.runs.speed): each policy's replay speed against least-loaded's, paired
per repeat. The ratios' arithmetic on a fake runner; one real subprocess round on a tiny window."""

import json

import pytest
from click.testing import CliRunner

from torta.runs.speed import BASELINE, SpeedCase, run_speed


def _fake(rates: dict[str, list[float]]):
    """A runner whose k-th call for a policy returns that policy's k-th rate (wall = CPU)."""
    calls: dict[str, int] = {}

    def run(case: dict, policy: str) -> dict:
        k = calls.get(policy, 0)
        calls[policy] = k + 1
        rate = rates[policy][k]
        return dict(policy=policy, requests=1000, wall_s=1000 / rate, cpu_s=2000 / rate, requests_per_s=rate,
                    requests_per_cpu_s=rate / 2, completed=1000, dropped=0, response_mean_s=1.0, switches=0,
                    load_avg_1m=0.0)
    return run, calls


def test_ratios_are_paired_per_repeat_and_the_order_rotates():
    run, calls = _fake({BASELINE: [100.0, 50.0, 100.0], "torta-ot": [40.0, 30.0, 60.0]})
    order = []
    doc = run_speed(SpeedCase(hours=0.1), ["torta-ot"], repeats=3,
                    runner=lambda c, p: (order.append(p), run(c, p))[1])
    assert calls == {BASELINE: 3, "torta-ot": 3}
    assert order == [BASELINE, "torta-ot", "torta-ot", BASELINE, BASELINE, "torta-ot"]  # rotated per repeat
    row = {r["policy"]: r for r in doc["policies"]}
    assert row["torta-ot"]["ratios_wall"] == pytest.approx([0.4, 0.6, 0.6])  # against the same repeat's run
    assert row["torta-ot"]["ratio_wall"] == pytest.approx(0.6)
    assert row["torta-ot"]["ratio_cpu"] == pytest.approx(0.6) and row["torta-ot"]["meets_half"]
    assert row[BASELINE]["ratio_cpu"] == 1.0


def test_below_half_is_reported_as_not_met():
    run, _ = _fake({BASELINE: [100.0], "torta-horizon": [49.0]})
    doc = run_speed(SpeedCase(hours=0.1), [BASELINE, "torta-horizon"], runner=run)
    assert [r["meets_half"] for r in doc["policies"]] == [True, False]


def test_unknown_policy_and_bad_case_fail_before_any_run():
    from torta.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="nope"):
        run_speed(SpeedCase(), ["nope"], runner=lambda c, p: pytest.fail("ran"))
    with pytest.raises(ValueError, match="hours"):
        SpeedCase(hours=0)


def test_cli_real_round_on_a_tiny_window():
    from torta.cli import main

    res = CliRunner().invoke(main, ["bench", "policies", "--hours", "0.02", "--warmup-hours", "0",
                                    "--policies", "torta-ot-last", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    rows = {r["policy"]: r for r in doc["policies"]}
    assert list(rows) == [BASELINE, "torta-ot-last"]
    assert rows[BASELINE]["requests"] == rows["torta-ot-last"]["requests"] > 0  # the same requests
    for r in doc["runs"]:
        assert r["cpu_s"] > 0 and r["completed"] + r["dropped"] == r["requests"]
    assert doc["case"]["warmup_h"] == 0 and doc["case"]["day"] == 11
