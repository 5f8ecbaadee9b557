"""The macro layer: where each origin's demand is served.

Planners over plain arrays (no I/O, no simulator imports): the OT planner (`ot`, settings in `config`),
SkyLB selective pushing (`skylb`), ACS-Diffusion (`acs`), and the fleet cost facts they plan on
(`fleetcost`). The planner-layer policies behind the `torta.policy` seam: `ot_policy` (myopic-ot,
torta-ot and its ablations), `reactive` (skylb, acs), their shared run context (`context`), registered
by `register`. The micro layer (a server inside the region) is `torta.allocator`."""
