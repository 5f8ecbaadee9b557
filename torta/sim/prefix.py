"""Per-server prefix (KV) cache at block granularity: the engine's bookkeeping (`PrefixCaches`).

Model (after vLLM's automatic prefix caching: vLLM docs, "Automatic Prefix Caching", design page
https://docs.vllm.ai/en/latest/design/prefix_caching.html, and the v0 design
https://docs.vllm.ai/en/latest/design/automatic_prefix_caching.html):

- A request carries the ids of its prompt's blocks of `block_tokens` tokens (Mooncake's `hash_ids`,
  512 tokens a block; kvcache-ai/Mooncake FAST'25 trace). An id names a block *and its whole prefix*
  (Mooncake's ids are prefix hashes, as vLLM's block hashes chain the parent's hash), so two requests
  share block k only when they share blocks 0..k. Only full blocks are cached:
  `full = min(len(ids), prompt_tokens // block_tokens)`.
- At admission (the prefill's start) a request hits the longest run of its full blocks, from the first,
  that the server holds. The cached tokens skip the prefill: the prefill computes the uncached suffix
  `q = prompt - cached` tokens, attending over the whole context (the attention term `q x prompt`
  instead of `prompt^2`, `torta.fleet.perf`); when every prompt token hits, the last one is recomputed
  (vLLM needs its logits): cached <= prompt - 1. Decode attends over the whole context as before.
- Memory. Blocks held by running requests are referenced (reference count > 0) and never evicted; they
  live inside the requests' own KV reservations (`min(prompt + output, kv_capacity)`, unchanged: no
  credit for the memory two running requests share, a conservative simplification). A block no running
  request references stays cached in the free KV memory, `kv_capacity - kv_reserved`; an admission that
  leaves too little free memory for the unreferenced cached blocks evicts them, least recently used
  first (vLLM's free-block queue is an LRU; evicting from its head). Among blocks freed at the same
  instant the deepest block of a prompt goes first (vLLM frees a finished request's blocks in reverse
  order, tail first), then the smaller id: `(release time, -depth, id)` ascending, the order the tests'
  brute-force reference uses (`tests/test_prefix_cache.py`).
- Order inside one admission batch: every member looks up the cache as it was before the batch (its hits
  become referenced), then the unreferenced blocks are evicted down to the free memory the batch leaves,
  then each member's missing blocks are inserted as referenced (one batch computes them; members of the
  same batch do not hit each other's new blocks, as in one vLLM scheduler step).
- Loading another model empties the server's cache (the server drained first: nothing references it).

Statistics per server for the slot accounting: prompt tokens admitted, prefill tokens saved (cached),
blocks evicted; per (origin, region) the prompt and saved tokens of the slot for the planner's
`SlotState.cache_hit_rate`.
"""

from __future__ import annotations

from itertools import islice

import numpy as np

DEFAULT_BLOCK_TOKENS = 512  # Mooncake's hash_ids block size (kvcache-ai/Mooncake, FAST'25 trace README)


def block_arrays(hash_ids) -> tuple[np.ndarray, np.ndarray] | None:
    """(flat int64 ids, offsets of length n + 1) from a sequence of id lists (None or empty: no ids);
    None when no request has any."""
    lens = np.fromiter((len(x) if x is not None else 0 for x in hash_ids), dtype=np.int64)
    if not lens.any():
        return None
    off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    flat = np.fromiter((b for x in hash_ids if x is not None for b in x), dtype=np.int64, count=int(off[-1]))
    return flat, off


class PrefixCaches:
    """The caches of every server (see the module docstring). `admit`, `release` and `clear` are called
    by the engine's server handlers (`torta.sim.servers`) only when the cache is on."""

    def __init__(self, n_servers: int, n_regions: int, block_tokens: int, block_ids: np.ndarray,
                 block_offsets: np.ndarray, origin: np.ndarray, region: list[int], prompt_tokens: np.ndarray) -> None:
        if not (isinstance(block_tokens, int) and block_tokens > 0):
            raise ValueError(f"block_tokens = {block_tokens!r}; expected a positive integer")
        S, R = n_servers, n_regions
        self.block_tokens = block_tokens
        # the block ids as one Python list (slices and dict lookups then allocate nothing per block)
        self.ids = np.asarray(block_ids, dtype=np.int64).tolist()
        off = np.asarray(block_offsets, dtype=np.int64)
        self.off = off[:-1].tolist()
        # each request's full (cacheable) blocks: ids[off[k]:off[k] + nfull[k]]
        self.nfull = np.minimum(np.diff(off), np.asarray(prompt_tokens, dtype=np.int64) // block_tokens).tolist()
        self.origin = np.asarray(origin).tolist()
        self.region = region
        # Invariants per server s: refs[s] maps every cached block to the number of running requests
        # holding it (0: unreferenced, evictable); lru[s] holds exactly the blocks with count 0, in
        # release order (oldest first; one release's blocks deepest first). A plain dict keeps insertion
        # order: a hit deletes its entry, eviction takes the head (cheaper than an OrderedDict, same order).
        # The methods walk a request's few blocks in plain Python loops: on CPython 3.11 that is cheaper
        # than the C-level map / zip / dict.update chains, whose iterators and temporaries cost more than
        # the 4-10 iterations they replace (measured on the bench's recorded calls, docs/PREFIX-CACHE.md).
        self.refs: list[dict] = [{} for _ in range(S)]
        self.lru: list[dict] = [{} for _ in range(S)]
        # slot statistics per server (reset by the engine at each slot boundary)
        self.prompt_tokens = [0] * S
        self.saved_tokens = [0] * S
        self.evictions = [0] * S
        # slot statistics per (origin, serving region), rows by origin
        self.od_prompt = [[0] * R for _ in range(R)]
        self.od_saved = [[0] * R for _ in range(R)]

    def blocks_of(self, position: int, prompt_tokens: int) -> tuple:
        """The ids of request `position`'s full prompt blocks (the cacheable ones)."""
        a = self.off[position]
        return tuple(self.ids[a:a + self.nfull[position]])

    def cached_for(self, server: int, blocks: tuple, prompt_tokens: int) -> int:
        """Prompt tokens of a request with full blocks `blocks` the server's cache holds now, as its
        admission would count them (no side effects)."""
        refs = self.refs[server]
        h = 0
        for b in blocks:
            if b not in refs:
                break
            h += 1
        c = h * self.block_tokens
        return c if c < prompt_tokens else max(0, prompt_tokens - 1)

    def admit_one(self, s: int, rid: int, p: int, free_tokens: float) -> tuple[int, float]:
        """`admit` for a batch of one request (position `rid`, `p` prompt tokens): the same result and
        effects with less work (the usual batch with the cache on)."""
        refs, lru = self.refs[s], self.lru[s]
        n = self.nfull[rid]
        h = 0
        if n:
            a = self.off[rid]
            blocks = self.ids[a:a + n]
            h = self._hit(refs, lru, blocks)
        B = self.block_tokens
        c = h * B
        if c >= p:
            c = p - 1 if p > 0 else 0
        q = p - c
        self.prompt_tokens[s] += p
        self.saved_tokens[s] += c
        o, r = self.origin[rid], self.region[s]
        self.od_prompt[o][r] += p
        self.od_saved[o][r] += c
        if lru and len(lru) > free_tokens // B:
            self._evict(s, refs, lru, free_tokens)
        if h < n:  # the blocks the prefill computes, referenced (some may be cached behind an evicted parent)
            self._insert(refs, lru, blocks[h:] if h else blocks)
        return q, 0.0 + q * p

    def _evict(self, s: int, refs: dict, lru: dict, free_tokens: float) -> None:
        """Evict s's unreferenced blocks, LRU first, down to what `free_tokens` of free KV memory holds."""
        ev = len(lru) - int(free_tokens // self.block_tokens)
        if ev >= len(lru):
            ev = len(lru)
            for b in lru:
                del refs[b]
            lru.clear()
        else:
            for b in list(islice(lru, ev)):  # the LRU's head (listed first: a dict cannot shrink while iterated)
                del lru[b]
                del refs[b]
        self.evictions[s] += ev

    @staticmethod
    def _hit(refs: dict, lru: dict, blocks: list) -> int:
        """The longest cached run of `blocks` from the first: each hit gains a reference, the unreferenced
        ones leave the LRU. Returns its length."""
        h = 0
        for b in blocks:
            k = refs.get(b)
            if k is None:
                break
            if not k:  # unreferenced until now: it leaves the LRU
                del lru[b]
            refs[b] = k + 1
            h += 1
        return h

    @staticmethod
    def _insert(refs: dict, lru: dict, new: list) -> None:
        """Reference the blocks `new` an admission computes (some may be cached behind an evicted parent)."""
        get = refs.get
        for b in new:
            k = get(b)
            if k is None:
                refs[b] = 1
            else:
                if not k:  # cached behind an evicted parent: referenced again
                    del lru[b]
                refs[b] = k + 1

    def admit(self, s: int, rows, free_tokens: float) -> tuple[int, float]:
        """A prefill batch starts on s: `rows` are its (position, model, prompt, output, t, reservation)
        rows; `free_tokens` = KV capacity - reservations with the batch admitted. Returns the batch's
        (prefill tokens, attention term) after the hits. (`admit_one` is this for one row.)"""
        ids, off, nfull, B, refs, lru = self.ids, self.off, self.nfull, self.block_tokens, self.refs[s], self.lru[s]
        org, od_p, od_s, r = self.origin, self.od_prompt, self.od_saved, self.region[s]
        hit = self._hit
        tok = 0
        sq = 0.0
        todo = []
        ptot = saved = 0
        for row in rows:
            rid = int(row[0])
            p = int(row[2])
            n = nfull[rid]
            h = 0
            if n:
                a = off[rid]
                blocks = ids[a:a + n]
                h = hit(refs, lru, blocks)
                if h < n:
                    todo.append(blocks[h:] if h else blocks)
            c = h * B
            if c >= p:
                c = p - 1 if p > 0 else 0
            q = p - c
            tok += q
            sq += q * p
            ptot += p
            saved += c
            o = org[rid]
            od_p[o][r] += p
            od_s[o][r] += c
        self.prompt_tokens[s] += ptot
        self.saved_tokens[s] += saved
        if lru and len(lru) > free_tokens // B:
            self._evict(s, refs, lru, free_tokens)
        for new in todo:  # the blocks the batch computes, referenced by their requests
            self._insert(refs, lru, new)
        return tok, sq

    def release_one(self, s: int, rid: int) -> None:
        """`release` of one request (position `rid`): its blocks lose a reference; the ones no running
        request holds now join the LRU tail first (the order `release` gives one request's blocks)."""
        n = self.nfull[rid]
        if n:
            refs, lru = self.refs[s], self.lru[s]
            a = self.off[rid]
            for b in reversed(self.ids[a:a + n]):
                k = refs[b]
                if k == 1:
                    refs[b] = 0
                    lru[b] = None
                else:
                    refs[b] = k - 1

    def release(self, s: int, done, first: int) -> None:
        """Requests finished on s: their rows are `done[first:]` (the engine's completion rows of 7
        doubles, position first). Their blocks lose a reference; unreferenced ones join the LRU, deepest
        first, then by id (see the module docstring)."""
        if len(done) - first == 7:
            self.release_one(s, int(done[first]))
            return
        ids, off, nfull, refs, lru = self.ids, self.off, self.nfull, self.refs[s], self.lru[s]
        freed = []
        for k in range(first, len(done), 7):
            rid = int(done[k])
            a = off[rid]
            d = nfull[rid]
            for b in reversed(ids[a:a + d]):
                d -= 1
                c = refs[b] - 1
                refs[b] = c
                if not c:
                    freed.append((-d, b))
        freed.sort()
        for _, b in freed:
            lru[b] = None

    def clear(self, s: int) -> None:
        """A model load on s (nothing running): the cache is emptied (not counted as evictions)."""
        self.refs[s].clear()
        self.lru[s].clear()

    def take_slot(self) -> dict:
        """The slot's per-server statistics (numpy arrays), reset for the next slot."""
        S = len(self.prompt_tokens)
        out = dict(cache_prompt_tokens=np.asarray(self.prompt_tokens, dtype=np.int64),
                   prefill_tokens_saved=np.asarray(self.saved_tokens, dtype=np.int64),
                   cache_evictions=np.asarray(self.evictions, dtype=np.int64))
        self.prompt_tokens, self.saved_tokens, self.evictions = [0] * S, [0] * S, [0] * S
        return out

    def take_affinity(self) -> np.ndarray:
        """(R, R) token hit rate of the slot's admissions by (origin, serving region) (0 where none), reset."""
        p, c = np.asarray(self.od_prompt, dtype=float), np.asarray(self.od_saved, dtype=float)
        R = len(p)
        self.od_prompt, self.od_saved = [[0] * R for _ in range(R)], [[0] * R for _ in range(R)]
        return np.divide(c, p, out=np.zeros_like(c), where=p > 0)
