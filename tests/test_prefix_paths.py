"""The prefix cache's one-request paths (`PrefixCaches.admit_one`, `release_one`, what the server
handlers call for a prefill batch of one request and a single completion) against its general batch
paths (`admit`, and `release` of several finished requests, here one plus a request without blocks)
on the same random sequences: same results, statistics, references and LRU
order, with prefix ids (shared heads, repeated turns) and with ids that break the prefix contract
(an id after different parents, blocks cached behind an evicted parent)."""

from __future__ import annotations

from array import array

import numpy as np
import pytest

from torta.sim.prefix import PrefixCaches

B = 512


def _workload(rng, n_requests: int, prefix_ids: bool):
    """(flat block ids, offsets, prompt tokens, origins) of `n_requests` random requests."""
    ids = []
    for k in range(n_requests):
        n = int(rng.integers(0, 9)) if k else 0  # request 0 has no blocks
        if prefix_ids:  # a shared 2-block head, then a few conversations' blocks, turns extend each other
            head = [-1, -2][: min(n, 2)]
            conv = int(rng.integers(0, 6))
            ids.append(head + [conv * 100 + j for j in range(n - len(head))])
        else:  # few distinct ids, the same id at different depths and after different parents
            ids.append(rng.choice(12, size=n, replace=False).tolist())
    off = np.zeros(n_requests + 1, dtype=np.int64)
    np.cumsum([len(x) for x in ids], out=off[1:])
    flat = np.asarray([b for x in ids for b in x], dtype=np.int64)
    # prompts from no full block to all blocks full (plus a partial one)
    prompt = np.asarray([int(rng.integers(0, len(x) + 1)) * B + int(rng.integers(0, B)) for x in ids])
    return flat, off, prompt, rng.integers(0, 2, size=n_requests)


def _state(pc: PrefixCaches) -> tuple:
    return ([dict(r) for r in pc.refs], [list(x) for x in pc.lru], pc.take_slot(), pc.take_affinity())


@pytest.mark.parametrize("prefix_ids", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_one_request_paths_match_the_batch_paths(seed, prefix_ids):
    rng = np.random.default_rng(seed)
    flat, off, prompt, origin = _workload(rng, 300, prefix_ids)
    args = (2, 2, B, flat, off, origin, [0, 1], prompt)
    batch, one = PrefixCaches(*args), PrefixCaches(*args)
    running = [[], []]
    for step in range(2000):
        s = int(rng.integers(0, 2))
        if running[s] and (rng.random() < 0.5 or len(running[s]) > 6):
            rid = running[s].pop(int(rng.integers(0, len(running[s]))))
            # with request 0 (no blocks) finishing too, `release` takes its general (sorting) path
            batch.release(s, array("d", [rid, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 0)
            one.release_one(s, rid)
        elif rng.random() < 0.02 and not running[s]:
            batch.clear(s)
            one.clear(s)
        else:
            rid = int(rng.integers(1, len(prompt)))
            free = float(rng.integers(0, 8)) * B + float(rng.integers(0, B))
            row = (float(rid), 0.0, float(prompt[rid]), 1.0, 0.0, 1.0)
            got = one.admit_one(s, rid, int(prompt[rid]), free)
            assert got == batch.admit(s, [row], free), step
            assert type(got[0]) is int and type(got[1]) is float
            running[s].append(rid)
        assert [dict(r) for r in one.refs] == [dict(r) for r in batch.refs], step
        assert [list(x) for x in one.lru] == [list(x) for x in batch.lru], step
    a, b = _state(batch), _state(one)
    assert a[:2] == b[:2]
    for k in a[2]:
        np.testing.assert_array_equal(a[2][k], b[2][k])
    np.testing.assert_array_equal(a[3], b[3])
    assert int(a[2]["cache_evictions"].sum()) > 0 and int(a[2]["prefill_tokens_saved"].sum()) > 0
