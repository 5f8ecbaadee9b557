"""Replay parity: completions and slot tables byte-identical to the reference engine
(`benchmarks/parity_ref.json`, written by `python -m benchmarks.parity --write-ref`).

The quick subset (five policies on 6 minutes of day 12 on abilene, a quarter hour of azure-2023-code,
the large-fleet bench case at 20,000 requests) runs by default; the full parity set is `-m slow`."""

from __future__ import annotations

import json

import pytest

from benchmarks.parity import DEFAULT_REF, cases, compare, run_case

REF = json.loads(DEFAULT_REF.read_text())["cases"]


def _check(case):
    got = run_case(case)
    assert not compare(REF, {case["name"]: got}), (
        f"{case['name']}: completions/slots differ from benchmarks/parity_ref.json "
        f"(response_mean_s {got['response_mean_s']} vs {REF.get(case['name'], {}).get('response_mean_s')})")


@pytest.mark.parametrize("case", cases("quick"), ids=lambda c: c["name"])
def test_quick_parity(case):
    _check(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", cases("full"), ids=lambda c: c["name"])
def test_full_parity(case):
    _check(case)


def test_compare_flags_a_changed_or_missing_hash():
    ref = {"a": {"completions_sha256": "x", "slots_sha256": "y"}}
    assert compare(ref, {"a": {"completions_sha256": "x", "slots_sha256": "y"}}) == []
    assert compare(ref, {"a": {"completions_sha256": "x", "slots_sha256": "z"}}) == ["a"]
    assert compare(ref, {"b": {"completions_sha256": "x", "slots_sha256": "y"}}) == ["b"]
