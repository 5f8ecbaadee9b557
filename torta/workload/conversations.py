"""A seeded generator of multi-turn conversations with prefix block ids, for traces without them.

Every request is one turn of a conversation; a turn's prompt is the conversation's whole context so far
(the system prompt, every earlier user message and every earlier answer) plus the new user message, so
each turn's prompt extends the previous turn's context. The context is one append-only token stream
per conversation, cut into blocks of `block_tokens` (512, Mooncake's hash_ids block; kvcache-ai/Mooncake
FAST'25): block j of a conversation's stream has the same id in every turn, and blocks that lie wholly
inside a shared system prompt have the same id in every conversation using it. Ids are therefore
prefix ids (equal id => equal prefix), the contract of `torta.sim.prefix`. A prompt's ids cover its
ceil(prompt / block) blocks, the last one possibly partial (as in Mooncake's trace).

Process (all draws from one numpy PCG64 seeded with `[seed, 41]`):
- conversations start as a Poisson process of `conversations_per_s` over `duration_s`;
- each uses one of `system_prompts` system prompts (uniform), `system_tokens` tokens long;
- turns per conversation: 1 + Geometric with mean `mean_turns`;
- user message and answer lengths: log-normal with medians `user_tokens_median` and
  `output_tokens_median` and log-sd `length_sigma`, at least 1 token;
- the next turn starts `think_s` (exponential mean) after the previous turn's *arrival* (the
  generator does not know the replay's response times);
- a conversation ends early when the next prompt would exceed `max_context_tokens`.

The defaults are chosen to give Mooncake-like long, growing prompts at a modest scale; they are
illustrative, not fitted to a trace. The output says it is synthetic (`source`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from torta.schema import REQUEST_SCHEMA, conform

SOURCE = "synthetic-conversations"
_CONV_SHIFT = 24  # block id = (conversation << 24) | block index; system prompt blocks: -((sys << 24) | j) - 1


@dataclass(frozen=True)
class ConversationConfig:
    duration_s: float = 3600.0
    conversations_per_s: float = 0.5
    mean_turns: float = 4.0
    system_prompts: int = 4
    system_tokens: int = 2048
    user_tokens_median: float = 300.0
    output_tokens_median: float = 200.0
    length_sigma: float = 0.8
    think_s: float = 60.0
    max_context_tokens: int = 32768
    block_tokens: int = 512

    def __post_init__(self) -> None:
        for name in ("duration_s", "conversations_per_s", "user_tokens_median", "output_tokens_median", "think_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"ConversationConfig.{name} = {v!r}; expected a finite number > 0")
        if not (math.isfinite(self.mean_turns) and self.mean_turns >= 1):
            raise ValueError(f"ConversationConfig.mean_turns = {self.mean_turns!r}; expected a finite number >= 1")
        if not (math.isfinite(self.length_sigma) and self.length_sigma >= 0):
            raise ValueError(f"ConversationConfig.length_sigma = {self.length_sigma!r}; expected >= 0")
        if self.max_context_tokens >= 1 << _CONV_SHIFT:
            raise ValueError(f"ConversationConfig.max_context_tokens = {self.max_context_tokens}; expected < 2**24")
        for name in ("system_prompts", "block_tokens", "max_context_tokens"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"ConversationConfig.{name} = {v!r}; expected an integer >= 1")
        if not (isinstance(self.system_tokens, int) and 0 <= self.system_tokens < self.max_context_tokens):
            raise ValueError(f"ConversationConfig.system_tokens = {self.system_tokens!r}; expected an integer in "
                             f"[0, max_context_tokens = {self.max_context_tokens})")


def _block_ids(conv: int, sys_id: int, sys_tokens: int, prompt: int, B: int) -> list[int]:
    """Ids of the ceil(prompt / B) blocks of a prompt of conversation `conv` (see the module docstring)."""
    n = -(-prompt // B)
    n_sys = sys_tokens // B  # blocks wholly inside the system prompt: shared by its conversations
    return [-((sys_id << _CONV_SHIFT) | j) - 1 if j < n_sys else ((conv << _CONV_SHIFT) | j) for j in range(n)]


def generate(config: ConversationConfig = ConversationConfig(), *, seed: int = 0) -> pl.DataFrame:
    """Canonical requests (REQUEST_SCHEMA, in arrival order, request_id 0..n-1) plus `hash_ids` and
    `conversation` columns; see the module docstring."""
    c = config
    rng = np.random.default_rng([seed, 41])
    n_conv = int(rng.poisson(c.conversations_per_s * c.duration_s))
    starts = np.sort(rng.uniform(0.0, c.duration_s, n_conv))
    p_stop = 1.0 / c.mean_turns
    rows_t, rows_p, rows_o, rows_ids, rows_conv = [], [], [], [], []
    mu_u, mu_o = math.log(c.user_tokens_median), math.log(c.output_tokens_median)
    for k in range(n_conv):
        sys_id = int(rng.integers(c.system_prompts))
        turns = int(rng.geometric(p_stop))
        t = float(starts[k])
        context = c.system_tokens
        for _ in range(turns):
            user = max(1, int(round(rng.lognormal(mu_u, c.length_sigma))))
            out = max(1, int(round(rng.lognormal(mu_o, c.length_sigma))))
            prompt = context + user
            if prompt > c.max_context_tokens:
                break
            rows_t.append(t)
            rows_p.append(prompt)
            rows_o.append(out)
            rows_ids.append(_block_ids(k, sys_id, c.system_tokens, prompt, c.block_tokens))
            rows_conv.append(k)
            context = prompt + out
            t += float(rng.exponential(c.think_s))
    order = sorted(range(len(rows_t)), key=lambda i: (rows_t[i], i))
    n = len(order)
    df = pl.DataFrame({
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": np.asarray([rows_t[i] for i in order], dtype=np.float64),
        "timestamp_utc": [None] * n,
        "prompt_tokens": np.asarray([rows_p[i] for i in order], dtype=np.int64),
        "output_tokens": np.asarray([rows_o[i] for i in order], dtype=np.int64),
        "model": [None] * n, "origin_region": [None] * n, "source": [SOURCE] * n,
        "hash_ids": pl.Series([rows_ids[i] for i in order], dtype=pl.List(pl.Int64)),
        "conversation": np.asarray([rows_conv[i] for i in order], dtype=np.int64),
    }, schema_overrides={"timestamp_utc": pl.Datetime("us", "UTC"), "model": pl.String, "origin_region": pl.String,
                         "hash_ids": pl.List(pl.Int64)})
    if n:  # arrival_s counts from the first arrival, as every canonical trace
        df = df.with_columns(pl.col("arrival_s") - float(df["arrival_s"][0]))
    return conform(df, REQUEST_SCHEMA)
