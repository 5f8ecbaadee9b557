"""Planners: the macro OT planner (`ot`), the TORTA micro allocator (`micro`, `hungarian`) and the
baseline balancers (`skylb`, `acs`). Pure numpy over arrays; no I/O, no simulator imports.

The simulator-facing allocators live in `alloc` (greedy, per request) and `alloc_batch` (the Hungarian
batch-window ablation, `torta-ot-hungarian`, which uses the simulator's batch-window hook: declare
`batch_window_s > 0` and implement `route(view, request)` and `assign_batch(view, requests, region)`;
see torta.policy.base and torta/sim/README.md)."""
