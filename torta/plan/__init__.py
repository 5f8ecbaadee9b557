"""Planners: the macro OT planner (`ot`), the TORTA micro allocator (`micro`, `hungarian`) and the
baseline balancers (`skylb`, `acs`). Pure numpy over arrays; no I/O, no simulator imports."""
