"""Replay parity: completions and slot tables byte-identical to the reference engine
(`benchmarks/parity_ref.json`, written by `python -m benchmarks.parity --write-ref`).

The quick subset (five policies on 6 minutes of day 12 on abilene, a quarter hour of azure-2023-code,
the large-fleet bench case at 20,000 requests) runs by default; the full parity set is `-m slow`."""

from __future__ import annotations

import json

import pytest

from benchmarks.parity import DEFAULT_REF, cases, compare, environment_differences, run_case

REF_DOC = json.loads(DEFAULT_REF.read_text())
REF = REF_DOC["cases"]
# byte parity holds on the package versions the reference was recorded with (benchmarks/parity.py)
SAME_ENV = pytest.mark.skipif(bool(environment_differences(REF_DOC)),
                              reason="benchmarks/parity_ref.json was recorded on other package versions: "
                                     + ", ".join(environment_differences(REF_DOC)))


def _check(case):
    got = run_case(case)
    assert not compare(REF, {case["name"]: got}), (
        f"{case['name']}: completions/slots differ from benchmarks/parity_ref.json "
        f"(response_mean_s {got['response_mean_s']} vs {REF.get(case['name'], {}).get('response_mean_s')})")


@SAME_ENV
@pytest.mark.parametrize("case", cases("quick"), ids=lambda c: c["name"])
def test_quick_parity(case):
    _check(case)


@pytest.mark.slow
@SAME_ENV
@pytest.mark.parametrize("case", cases("full"), ids=lambda c: c["name"])
def test_full_parity(case):
    _check(case)


def test_compare_flags_a_changed_or_missing_hash():
    ref = {"a": {"completions_sha256": "x", "slots_sha256": "y"}}
    assert compare(ref, {"a": {"completions_sha256": "x", "slots_sha256": "y"}}) == []
    assert compare(ref, {"a": {"completions_sha256": "x", "slots_sha256": "z"}}) == ["a"]
    assert compare(ref, {"b": {"completions_sha256": "x", "slots_sha256": "y"}}) == ["b"]


def test_a_reference_from_other_package_versions_is_named_not_compared():
    from benchmarks.parity import environment

    here = environment()
    assert environment_differences({"environment": here}) == []
    moved = environment_differences({"environment": {**here, "numpy": "0.0"}})
    assert moved == [f"numpy 0.0 -> {here['numpy']}"]


def test_table_hash_is_of_contents_not_file_bytes(tmp_path):
    import polars as pl

    from benchmarks.parity import table_sha256

    df = pl.DataFrame({"a": [1, None, 3], "x": [0.5, 1.5, None], "s": ["u", None, "w"]})
    df.write_parquet(tmp_path / "one.parquet", compression="zstd")
    df.write_parquet(tmp_path / "two.parquet", compression="snappy", row_group_size=1)
    assert (tmp_path / "one.parquet").read_bytes() != (tmp_path / "two.parquet").read_bytes()
    assert table_sha256(tmp_path / "one.parquet") == table_sha256(tmp_path / "two.parquet")
    df.with_columns(x=pl.Series([0.5, 1.5000000000000002, None])).write_parquet(tmp_path / "three.parquet")
    assert table_sha256(tmp_path / "three.parquet") != table_sha256(tmp_path / "one.parquet")
