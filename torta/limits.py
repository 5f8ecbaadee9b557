"""Documented limits on inputs, checked where the input enters (ingest, scenario loader, replay).

Each limit is far above anything the shipped traces and scenarios need (the largest: a 14-day
workload, 15-minute slots, tens of servers, prompts of at most ~100 k tokens) and far below what would
make a replay run for days or exhaust memory. A value outside a limit is an input error (exit 2)
naming the file, line or field, not a long run. See docs/LIMITS.md.
"""

from __future__ import annotations

DAY_S = 86400.0

# ingest: numeric timestamps (after unit conversion) lie in [-MAX_TIMESTAMP_S, MAX_TIMESTAMP_S]
# (1e10 s after the Unix epoch is the year 2286); a trace spans at most MAX_TRACE_SPAN_S.
MAX_TIMESTAMP_S = 1e10
MAX_TRACE_SPAN_S = 10 * 366 * DAY_S
# ingest and replay: prompt and output tokens per request (2**24 = 16.8 M, above any model's context).
MAX_TOKENS = 2**24
# ingest: one CSV / JSONL line (record) at most this many bytes; longer lines are rejected while the
# file is streamed (bounded memory), before any parser sees them.
MAX_LINE_BYTES = 1 << 20

# replay: arrival times (after load scaling) in [0, MAX_ARRIVAL_S].
MAX_ARRIVAL_S = 400 * DAY_S
# replay: load factor F in [MIN_LOAD_FACTOR, MAX_LOAD_FACTOR]; `replicate` makes ceil(F) copies.
MIN_LOAD_FACTOR = 1e-3
MAX_LOAD_FACTOR = 1e6  # benchmarks compress a short trace ~5e4x onto thousands of servers
MAX_REPLICATE_FACTOR = 100.0
# replay: simulated time stops at the horizon: last arrival + max(DRAIN_MIN_S, DRAIN_SPAN_FACTOR x span)
# (the queues left at the last arrival get that long to drain); and the slots of the horizon are at most
# MAX_SLOTS (a slot is one planner call and one accounting row per server).
DRAIN_MIN_S = 7 * DAY_S
DRAIN_SPAN_FACTOR = 10.0
MAX_SLOTS = 1_000_000

# scenario: macro slot length and total server count.
MIN_SLOT_S = 1.0
MAX_SLOT_S = DAY_S
MAX_SERVERS = 100_000

# error messages quote at most this many characters of an offending value
QUOTE_CHARS = 200


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """repr() of `value`, cut to `limit` characters (with the full length noted)."""
    text = value if isinstance(value, str) else None
    r = repr(value)
    if len(r) <= limit:
        return r
    n = len(text) if text is not None else len(r)
    return f"{r[:limit]}... ({n:,} characters)"


def horizon_s(first_arrival_s: float, last_arrival_s: float) -> float:
    span = max(0.0, last_arrival_s - first_arrival_s)
    return last_arrival_s + max(DRAIN_MIN_S, DRAIN_SPAN_FACTOR * span)
