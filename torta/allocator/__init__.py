"""The micro layer: which server inside a region serves a request (the `MicroAllocator` seam of
torta.policy.base).

`greedy`: the TORTA greedy allocator (`TortaAllocator`), the guarded warm least-loaded scan the baselines
get (`WarmLeastLoadedScan`), and `PlannedAllocator`, which routes by a per-model macro plan and picks the
server with one of them. `batch`: the Hungarian batch-window ablation (`torta-ot-hungarian`) over the
pure solver in `hungarian`. `config`: `MicroConfig`."""
