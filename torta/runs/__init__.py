"""A run's inputs and the runners over them.

`inputs`: the requests and context of one replay (`SeedInput`: a shipped trace, a canonical Parquet file
or a window of a multi-day workload, with its demand history). `execute`: the one way to prepare a policy
for an input and replay it (every runner goes through it). `spec`: one run named by a key (Dagster's
partitions, `torta run`). `compare`: policies on the same requests and seeds (`torta compare`); `stats`:
t-intervals and paired differences; `experiment`: the paper's comparison; `planlog`: the macro plans a
run made. The evaluation protocol's constants are `torta.config.EVAL_PROTOCOL`."""
