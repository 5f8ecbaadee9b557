"""The per-server prefix (KV) cache of the replay (torta.sim.prefix): TTFT of a cached prefix, eviction
under memory pressure, a model load emptying the cache, the hit rate against an independent brute-force
reference over the same eviction rule, and the simulator's invariants with the cache on."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from torta.sim.engine import EngineConfig
from torta.sim.replay import replay
from torta.sim.testing import LinearPerf, make_requests, make_world
from torta.workload.conversations import ConversationConfig, generate

B = 512
DEBUG = EngineConfig(debug=True)


def with_blocks(df: pl.DataFrame, ids) -> pl.DataFrame:
    return df.with_columns(pl.Series("hash_ids", ids, dtype=pl.List(pl.Int64)))


def completions(res) -> pl.DataFrame:
    return pl.read_parquet(res.completions_path).sort("request_id")


def one_server(kv_tokens=100_000, **kw):
    return make_world((1,), perf=LinearPerf(kv_tokens={"G": kv_tokens}, **kw))


def test_cached_prefix_cuts_ttft_by_the_prefill_of_its_blocks(tmp_path):
    world = one_server()
    p = 2 * B + 200  # two full blocks cached, 200 tokens computed (exact under the prefill memo's rounding)
    df = with_blocks(make_requests([0.0, 100.0], prompt_tokens=p, output_tokens=5), [[1, 2, 3], [1, 2, 3]])
    on = replay(world, df, "least-loaded", seed=0, out_dir=tmp_path / "on", config=DEBUG)
    off = replay(world, df, "least-loaded", seed=0, out_dir=tmp_path / "off",
                 config=replace(DEBUG, prefix_cache=False))
    c_on, c_off = completions(on), completions(off)
    perf = world.perf
    saved_s = (perf.prefill_ms("m", "G", 1, p) - perf.prefill_ms("m", "G", 1, p - 2 * B)) / 1000.0
    assert saved_s == pytest.approx(0.1024)
    assert c_on["ttft_s"][0] == c_off["ttft_s"][0]  # nothing cached yet
    assert c_off["ttft_s"][1] - c_on["ttft_s"][1] == pytest.approx(saved_s, rel=1e-9, abs=1e-12)
    # decode attends over the whole context: the time per output token does not change
    assert c_on["tpot_s"][1] == pytest.approx(c_off["tpot_s"][1])
    s = on.summary
    assert s["prefix_cache"] and not off.summary["prefix_cache"]
    assert s["prefill_tokens_saved"] == 2 * B and s["cache_hit_rate"] == pytest.approx(2 * B / (2 * p))
    assert off.summary["prefill_tokens_saved"] == 0 and off.summary["cache_hit_rate"] == 0.0
    assert "prefill_tokens_saved" in on.slots.columns and "prefill_tokens_saved" not in off.slots.columns
    assert int(on.slots["prefill_tokens_saved"].sum()) == 2 * B


def test_a_fully_cached_prompt_still_computes_its_last_token(tmp_path):
    world = one_server()
    df = with_blocks(make_requests([0.0, 100.0], prompt_tokens=2 * B, output_tokens=3), [[7, 8], [7, 8]])
    res = replay(world, df, "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    assert res.summary["prefill_tokens_saved"] == 2 * B - 1


def test_eviction_under_memory_pressure_is_lru_tail_first(tmp_path):
    # KV 4,098 tokens. A (4 blocks) finishes: its blocks stay cached in free memory. B (5 other full blocks)
    # reserves 3,002 tokens, leaving 1,096 free: two of A's blocks go, its tail first (blocks 4, 3).
    # C asks for A's blocks again and hits 1 and 2 only; admitting it leaves 2,048 tokens free for B's five
    # released blocks (2,560): one more eviction, B's tail block.
    world = one_server(kv_tokens=4098)
    df = with_blocks(make_requests([0.0, 100.0, 200.0], prompt_tokens=[4 * B, 3000, 4 * B], output_tokens=2),
                     [[1, 2, 3, 4], [11, 12, 13, 14, 15, 16], [1, 2, 3, 4]])
    res = replay(world, df, "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    assert res.summary["cache_evictions"] == 3
    assert res.summary["prefill_tokens_saved"] == 2 * B
    roomy = replay(one_server(kv_tokens=100_000), df, "least-loaded", seed=0, out_dir=tmp_path / "roomy",
                   config=DEBUG)
    assert roomy.summary["cache_evictions"] == 0
    assert roomy.summary["prefill_tokens_saved"] == 4 * B - 1  # all of A's blocks: the last token recomputed


def test_loading_another_model_empties_the_cache(tmp_path):
    world = make_world((1,), models=("a", "b"), perf=LinearPerf())
    df = with_blocks(make_requests([0.0, 100.0, 200.0], prompt_tokens=3 * B, output_tokens=2, model=["a", "b", "a"]),
                     [[1, 2, 3], [9, 10, 11], [1, 2, 3]])
    res = replay(world, df, "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    assert res.summary["switches"] == 2
    assert res.summary["prefill_tokens_saved"] == 0
    same = with_blocks(make_requests([0.0, 200.0], prompt_tokens=3 * B, output_tokens=2, model="a"),
                       [[1, 2, 3], [1, 2, 3]])
    assert replay(world, same, "least-loaded", seed=0, config=DEBUG).summary["prefill_tokens_saved"] == 3 * B - 1


def reference_cache(comp: pl.DataFrame, ids: dict, cap_tokens: int) -> tuple[int, int, int]:
    """Brute force over the completions: per server, finishes then admissions in time order; blocks a
    running request holds are referenced; an unreferenced block keeps the key (release time, -depth, id)
    and the smallest key is evicted while they take more than the free KV memory an admission leaves.
    Returns (prompt tokens admitted, prompt tokens cached at admission, blocks evicted)."""
    ok = comp.filter(pl.col("dropped_reason").is_null())
    total = saved = evicted = 0
    for (server,), g in ok.group_by(["server_id"]):
        rows = g.to_dicts()
        events = {}
        for r in rows:
            events.setdefault((r["finish_s"], 0), []).append(r)
            events.setdefault((r["admitted_s"], 1), []).append(r)
        referenced: dict[int, int] = {}
        free: dict[int, tuple] = {}
        used = 0
        for (t, kind) in sorted(events):
            group = events[(t, kind)]
            if kind == 0:
                for r in group:
                    full = ids[r["request_id"]][: r["prompt_tokens"] // B]
                    used -= min(r["prompt_tokens"] + r["output_tokens"], cap_tokens)
                    for depth, b in enumerate(full):
                        referenced[b] -= 1
                        if referenced[b] == 0:
                            del referenced[b]
                            free[b] = (t, -depth, b)
                continue
            todo = []
            for r in group:
                p = r["prompt_tokens"]
                full = ids[r["request_id"]][: p // B]
                used += min(p + r["output_tokens"], cap_tokens)
                h = 0
                while h < len(full) and (full[h] in referenced or full[h] in free):
                    h += 1
                total += p
                saved += min(h * B, p - 1)
                for b in full[:h]:
                    free.pop(b, None)
                    referenced[b] = referenced.get(b, 0) + 1
                todo.append(full[h:])
            while free and len(free) * B > cap_tokens - used:
                victim = min(free, key=free.get)
                del free[victim]
                evicted += 1
            for rest in todo:
                for b in rest:
                    free.pop(b, None)
                    referenced[b] = referenced.get(b, 0) + 1
    return total, saved, evicted


@pytest.fixture(scope="module")
def conversations():
    return generate(ConversationConfig(duration_s=900.0, conversations_per_s=0.4, system_tokens=1500,
                                       max_context_tokens=12_000), seed=3)


def test_hit_rate_matches_a_brute_force_reference(conversations, tmp_path):
    cap = 40_000  # small enough for evictions under this load
    world = make_world((2, 2), perf=LinearPerf(kv_tokens={"G": cap}, prefill_ms_per_token=0.05))
    res = replay(world, conversations, "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    comp = pl.read_parquet(res.completions_path)
    ids = dict(zip(conversations["request_id"].to_list(), conversations["hash_ids"].to_list()))
    total, saved, evicted = reference_cache(comp, ids, cap)
    s = res.summary
    assert evicted > 0 and saved > 0  # the case exercises both
    assert s["prefill_tokens_saved"] == saved
    assert s["cache_evictions"] == evicted
    assert s["cache_hit_rate"] == pytest.approx(saved / total, rel=1e-12)
    assert int(res.slots["cache_prompt_tokens"].sum()) == total


def test_invariants_and_determinism_with_the_cache_on(conversations, tmp_path):
    world = make_world((2, 1, 0), perf=LinearPerf(kv_tokens={"G": 30_000}), slot_s=60.0)
    runs = []
    for k in range(2):
        res = replay(world, conversations, "round-robin", seed=1, out_dir=tmp_path / str(k), config=DEBUG)
        c = pl.read_parquet(res.completions_path)
        n = conversations.height
        assert res.summary["completed"] + res.summary["dropped"] == n and c.height == n
        ok = c.filter(pl.col("dropped_reason").is_null())
        assert (ok["arrival_s"] <= ok["admitted_s"] + 1e-12).all()
        assert (ok["admitted_s"] < ok["first_token_s"]).all()
        assert (ok["first_token_s"] <= ok["finish_s"] + 1e-12).all()
        times = [t for t, _, _ in res.event_log]
        assert all(a <= b for a, b in zip(times, times[1:]))
        runs.append(((tmp_path / str(k) / "completions.parquet").read_bytes(),
                     (tmp_path / str(k) / "slots.parquet").read_bytes(), res.summary["prefill_tokens_saved"]))
    assert runs[0] == runs[1]
    assert runs[0][2] > 0


def test_cache_on_without_block_ids_is_an_error():
    world = one_server()
    with pytest.raises(ValueError, match="block ids"):
        replay(world, make_requests([0.0]), "least-loaded", seed=0, config=EngineConfig(prefix_cache=True))


def test_cache_off_ignores_block_ids(tmp_path):
    world = one_server()
    plain = make_requests([0.0, 1.0, 50.0], prompt_tokens=3 * B, output_tokens=4)
    blocks = with_blocks(plain, [[1, 2, 3]] * 3)
    a = replay(world, plain, "least-loaded", seed=0, out_dir=tmp_path / "a")
    b = replay(world, blocks, "least-loaded", seed=0, out_dir=tmp_path / "b",
               config=EngineConfig(prefix_cache=False))
    for f in ("completions.parquet", "slots.parquet"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["prefix_cache"] is False


def test_generator_turns_extend_the_previous_context(conversations):
    df = conversations
    assert df["source"].unique().to_list() == ["synthetic-conversations"]
    assert (df["arrival_s"].diff().drop_nulls() >= 0).all()
    for _, g in df.group_by("conversation"):
        g = g.sort("arrival_s")
        p, o, ids = g["prompt_tokens"].to_list(), g["output_tokens"].to_list(), g["hash_ids"].to_list()
        for k in range(1, len(p)):
            assert p[k] > p[k - 1] + o[k - 1]  # previous prompt + its answer + a new message
            assert ids[k][:len(ids[k - 1])] == ids[k - 1]  # the previous prompt's blocks keep their ids
        for k in range(len(p)):
            assert len(ids[k]) == -(-p[k] // B)
    again = generate(ConversationConfig(duration_s=900.0, conversations_per_s=0.4, system_tokens=1500,
                                        max_context_tokens=12_000), seed=3)
    assert again.equals(df)
    assert np.all(df["prompt_tokens"].to_numpy() <= 12_000)


def mooncake_file(path, n=40):
    """A Mooncake-format JSONL: conversations of growing prompts sharing their 512-token prefix blocks."""
    lines = []
    for k in range(n):
        conv, turn = k % 4, k // 4
        blocks = 3 + turn
        ids = [conv * 1000 + j for j in range(blocks)]
        lines.append(json.dumps({"timestamp": 3000 * k, "input_length": blocks * B - 100, "output_length": 20,
                                 "hash_ids": ids}))
    path.write_text("\n".join(lines) + "\n")
    return path


def replay_json(*args):
    from click.testing import CliRunner

    from torta.cli import main

    r = CliRunner().invoke(main, ["replay", "--scenario", "single-region", "--policy", "least-loaded", "--json",
                                  "--no-progress", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_cli_replay_of_a_mooncake_file_reports_the_cache(tmp_path):
    f = mooncake_file(tmp_path / "mooncake.jsonl")
    s = replay_json("--trace", str(f), "--trace-format", "mooncake")
    assert s["prefix_cache"] is True
    assert s["prefill_tokens_saved"] > 0 and 0.0 < s["cache_hit_rate"] < 1.0
    assert isinstance(s["cache_evictions"], int)
    off = replay_json("--trace", str(f), "--trace-format", "mooncake", "--no-prefix-cache")
    assert off["prefix_cache"] is False and off["prefill_tokens_saved"] == 0 and off["cache_hit_rate"] == 0.0
    assert off["ttft_mean_s"] > s["ttft_mean_s"]


def test_cli_conversations_then_replay(tmp_path):
    from click.testing import CliRunner

    from torta.cli import main

    out = tmp_path / "conv.parquet"
    r = CliRunner().invoke(main, ["traces", "conversations", "--out", str(out), "--hours", "0.1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["requests"] == pl.read_parquet(out).height > 0
    s = replay_json("--trace", str(out))
    assert s["prefix_cache"] is True and s["prefill_tokens_saved"] > 0


def test_generic_mapping_reads_block_ids(tmp_path):
    from torta.ingest import ingest
    from torta.ingest.mapping import ColumnMapping

    f = tmp_path / "t.csv"
    f.write_text('t,p,o,blocks\n0,1100,5,"[4, 5, 6]"\n1,700,5,"[4]"\n')
    m = ColumnMapping(timestamp="t", prompt_tokens="p", output_tokens="o", timestamp_unit="s", block_ids="blocks")
    df = ingest("generic", f, mapping=m).frame
    assert df["hash_ids"].to_list() == [[4, 5, 6], [4]]


def test_warehouse_and_report_carry_the_cache_metrics(warehouse_db, tmp_path):
    import dagster as dg

    from pipelines import warehouse as wh
    from pipelines.assets import replay as replay_assets
    from pipelines.report import gather
    from pipelines.resources import WarehouseResource
    from torta.report.html import write_report

    trace = tmp_path / "conv.parquet"
    generate(ConversationConfig(duration_s=600.0, conversations_per_s=0.3), seed=0).write_parquet(trace)
    key = f"single-region|{trace}|least-loaded|0"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("replays", [key])
    res = dg.materialize([replay_assets.replay_run], partition_key=key, instance=instance,
                         resources={"warehouse": WarehouseResource(database=str(warehouse_db))},
                         run_config={"ops": {"replay_run": {"config": {"batch": "pc"}}}})
    assert res.success
    run = wh.query(warehouse_db, "select * from runs").to_dicts()[0]
    assert run["prefix_cache"] is True and run["prefill_tokens_saved"] > 0 and 0 < run["cache_hit_rate"] < 1
    slots = wh.query(warehouse_db, "select sum(prefill_tokens_saved) as saved, sum(cache_prompt_tokens) as p, "
                                   "sum(cache_evictions) as ev from slot_metrics")
    assert slots["saved"][0] == run["prefill_tokens_saved"] and slots["ev"][0] == run["cache_evictions"]
    assert run["cache_hit_rate"] == pytest.approx(slots["saved"][0] / slots["p"][0])
    inputs = gather(warehouse_db, "pc")
    assert inputs.comparison["cache_hit_rate"][0] == pytest.approx(run["cache_hit_rate"])
    html = write_report(inputs, tmp_path / "report").read_text()
    assert "cache hit" in html and "prefill saved" in html


class _TortaMicro:
    """No plan; the TORTA micro allocator in global scope (the seam's BasePolicy with another allocator)."""

    def __new__(cls):
        from torta.allocator.greedy import TortaAllocator
        from torta.policy.base import BasePolicy

        pol = BasePolicy()
        pol.name = "torta-micro"
        pol.allocator = TortaAllocator()
        return pol


def test_torta_micro_allocator_counts_the_prefill_a_cache_saves(tmp_path):
    world = make_world((2,), perf=LinearPerf())
    df = with_blocks(make_requests([0.0, 100.0], prompt_tokens=8 * B, output_tokens=2), [list(range(8))] * 2)
    on = completions(replay(world, df, _TortaMicro(), seed=0, out_dir=tmp_path / "on", config=DEBUG))
    off = completions(replay(world, df, _TortaMicro(), seed=0, out_dir=tmp_path / "off",
                             config=replace(DEBUG, prefix_cache=False)))
    # without the cache the spreading term sends the second request to the other idle server; with it, the
    # prefill of 4,095 cached tokens outweighs that term and the request meets its prefix
    assert off["server_id"][1] != off["server_id"][0]
    assert on["server_id"][1] == on["server_id"][0]
    assert on["ttft_s"][1] < off["ttft_s"][1]


def test_prefix_hash_keeps_affinity_and_bounds_load(tmp_path):
    from torta.allocator.prefix_hash import BOUND_C

    world = make_world((4,), perf=LinearPerf(kv_tokens={"G": 10_000_000}))
    spaced = with_blocks(make_requests(100.0 * np.arange(12), prompt_tokens=6 * B, output_tokens=2),
                         [[1000 * (k % 3) + j for j in range(6)] for k in range(12)])
    c = completions(replay(world, spaced, "prefix-hash", seed=0, out_dir=tmp_path / "a", config=DEBUG))
    by_key = c.with_columns(key=pl.col("request_id") % 3).group_by("key").agg(pl.col("server_id").n_unique())
    assert by_key["server_id"].to_list() == [1, 1, 1]  # every key always on one server
    assert c["server_id"].n_unique() >= 2  # and keys spread over servers
    assert c.slice(3)["ttft_s"].max() < c.head(3)["ttft_s"].min()  # later turns hit their server's cache
    burst = with_blocks(make_requests(np.zeros(40), prompt_tokens=6 * B, output_tokens=50), [[1, 2, 3, 4, 5, 6]] * 40)
    b = completions(replay(world, burst, "prefix-hash", seed=0, out_dir=tmp_path / "b", config=DEBUG))
    counts = b.group_by("server_id").len()["len"].to_list()
    assert max(counts) <= int(np.ceil(BOUND_C * 40 / 4)) and len(counts) == 4
    plain = make_requests(np.zeros(8), prompt_tokens=300, output_tokens=5)  # no block ids: least-loaded
    p = completions(replay(world, plain, "prefix-hash", seed=0, out_dir=tmp_path / "c", config=DEBUG))
    assert p["server_id"].n_unique() == 4


def test_block_ids_follow_their_requests_into_arrival_order(tmp_path):
    world = one_server()
    df = with_blocks(make_requests([0.0, 0.0, 0.0], prompt_tokens=3 * B + 10, output_tokens=2),
                     [[1, 2, 3], [1, 2, 3], [9]])
    df = df.with_columns(pl.Series("arrival_s", [100.0, 0.0, 50.0]))  # rows out of arrival order
    c = completions(replay(world, df, "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG))
    ttft = dict(zip(c["request_id"].to_list(), c["ttft_s"].to_list()))
    assert ttft[0] < ttft[1] == pytest.approx(ttft[2])  # request 0 (t = 100 s) meets request 1's blocks


def test_planners_see_cache_affinity_per_origin_and_region(tmp_path):
    world = make_world((1, 1), perf=LinearPerf(), slot_s=50.0)
    df = with_blocks(make_requests([0.0, 10.0, 60.0, 70.0, 110.0], prompt_tokens=4 * B, output_tokens=2,
                                   origin=["r0", "r0", "r1", "r1", "r0"]), [[1, 2, 3, 4]] * 4 + [[50]])
    states = []
    res = replay(world, df, "local-only", seed=0, config=DEBUG, plan_sink=lambda st, plan: states.append(st))
    assert res.summary["prefill_tokens_saved"] == 2 * (4 * B - 1)
    assert states[0].cache_hit_rate is None  # nothing observed before the first slot
    first = states[1].cache_hit_rate  # the slot [0, 50): r0's two requests, served in r0
    assert first.shape == (2, 2) and first[0, 0] == pytest.approx((4 * B - 1) / (8 * B)) and first.sum() == first[0, 0]
    second = states[2].cache_hit_rate
    assert second[1, 1] == pytest.approx((4 * B - 1) / (8 * B)) and second[0, 0] == 0.0
    off = []
    replay(world, df, "local-only", seed=0, config=EngineConfig(prefix_cache=False),
           plan_sink=lambda st, plan: off.append(st))
    assert all(st.cache_hit_rate is None for st in off)


def test_a_prompt_repeating_a_block_id_is_a_clear_error(tmp_path):
    """An id names its whole prefix, so it cannot occur twice in one prompt (it used to crash the cache
    with a KeyError on the second admission): an InputError naming the request and the column."""
    from torta.errors import InputError

    df = with_blocks(make_requests([0.0, 1.0, 2.0], prompt_tokens=2 * B, output_tokens=3),
                     [[1, 2], [3, 3], [4, 4]])
    with pytest.raises(InputError, match=r"hash_ids.*request 1 repeats a block id.*2 request\(s\)"):
        replay(one_server(), df, "least-loaded", seed=0, out_dir=tmp_path / "bad")
    assert not (tmp_path / "bad" / "completions.parquet").exists()  # nothing half-written


class BruteLRU:
    """Brute-force model of one server's cache for `test_cache_calls_match_a_brute_force_lru`: reference
    counts, and for each unreferenced block the key (release call, -depth, id); eviction takes the
    smallest keys (the rule of torta.sim.prefix's docstring)."""

    def __init__(self):
        self.refs: dict[int, int] = {}
        self.key: dict[int, tuple] = {}
        self.calls = self.evicted = 0

    def admit(self, batch, free_tokens):
        """batch: (blocks, prompt) per member. Returns (prefill tokens, attention term)."""
        tok, sq, todo = 0, 0.0, []
        for blocks, p in batch:
            h = 0
            while h < len(blocks) and blocks[h] in self.refs:
                h += 1
            for b in blocks[:h]:
                self.key.pop(b, None)
                self.refs[b] += 1
            c = min(h * B, max(0, p - 1))
            tok, sq = tok + p - c, sq + (p - c) * p
            todo.append(blocks[h:])
        while self.key and len(self.key) * B > free_tokens:
            victim = min(self.key, key=self.key.get)
            del self.key[victim], self.refs[victim]
            self.evicted += 1
        for rest in todo:
            for b in rest:
                self.key.pop(b, None)
                self.refs[b] = self.refs.get(b, 0) + 1
        return tok, sq

    def release(self, members):
        self.calls += 1
        for blocks in members:
            for depth, b in enumerate(blocks):
                self.refs[b] -= 1
                if not self.refs[b]:
                    self.key[b] = (self.calls, -depth, b)

    def lru_order(self):
        return sorted(self.key, key=self.key.get)


@pytest.mark.parametrize("seed", range(6))
def test_cache_calls_match_a_brute_force_lru(seed):
    """torta.sim.prefix's one-request and batch paths, driven directly with random admissions and
    completions on two servers, against `BruteLRU`: the same prefill results, reference counts, LRU
    order (eviction order), hits and evictions after every call. The ids mix prefix-chained prompts
    (shared heads, as conversations) with reused ids in other orders (the generic mapping), so blocks
    cached behind an evicted parent occur too."""
    from torta.sim.prefix import PrefixCaches

    rng = np.random.default_rng(seed)
    n_req = 400
    ids, prompts = [], []
    for k in range(n_req):
        if k and rng.random() < 0.6:  # extends an earlier prompt (a conversation's next turn)
            base = ids[int(rng.integers(k))]
            blocks = base[: int(rng.integers(len(base) + 1))] + [int(x) for x in rng.integers(0, 300, rng.integers(0, 4))]
        else:
            blocks = [int(x) for x in rng.integers(0, 300, rng.integers(0, 8))]
        blocks = list(dict.fromkeys(blocks))  # distinct within a prompt (replay rejects repeats)
        ids.append(blocks)
        prompts.append(int(rng.integers(1, (len(blocks) + 2) * B)))
    off = np.zeros(n_req + 1, dtype=np.int64)
    np.cumsum([len(x) for x in ids], out=off[1:])
    flat = np.array([b for x in ids for b in x], dtype=np.int64)
    pc = PrefixCaches(2, 1, B, flat, off, np.zeros(n_req, dtype=np.int64), [0, 0], np.array(prompts))
    ref = [BruteLRU(), BruteLRU()]
    full = [x[: p // B] for x, p in zip(ids, prompts)]
    running: list[list[int]] = [[], []]
    idle = list(range(n_req))
    for step in range(3000):
        s = int(rng.integers(2))
        if idle and (not running[s] or rng.random() < 0.5):  # an admission of 1 to 3 requests
            k = min(len(idle), 1 if rng.random() < 0.7 else int(rng.integers(2, 4)))
            batch = [idle.pop(int(rng.integers(len(idle)))) for _ in range(k)]
            free = float(rng.integers(0, 40) * B + rng.integers(0, B))
            rows = [(float(r), 0.0, float(prompts[r]), 1.0, 0.0, 0.0) for r in batch]
            got = pc.admit_one(s, batch[0], prompts[batch[0]], free) if k == 1 else pc.admit(s, iter(rows), free)
            assert got == ref[s].admit([(full[r], prompts[r]) for r in batch], free), step
            running[s].extend(batch)
        elif running[s]:  # completions of 1 to 3 requests
            k = min(len(running[s]), 1 if rng.random() < 0.7 else int(rng.integers(2, 4)))
            done = [running[s].pop(int(rng.integers(len(running[s])))) for _ in range(k)]
            if k == 1 and rng.random() < 0.5:
                pc.release_one(s, done[0])
            else:  # the engine's completion rows: 7 doubles, position first
                pc.release(s, [x for r in done for x in (float(r), 0, 0, 0, 0, 0, 0)], 0)
            idle.extend(done)
            ref[s].release([full[r] for r in done])
        for x in (0, 1):
            assert pc.refs[x] == ref[x].refs, step
            assert list(pc.lru[x]) == ref[x].lru_order(), step
            assert pc.evictions[x] == ref[x].evicted, step
    assert sum(pc.saved_tokens) > 0 and sum(r.evicted for r in ref) > 0
