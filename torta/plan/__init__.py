"""Old module paths kept only for `torta/rl/replay_env.py`, which the engine half of issue 16 rewrites (it
is not edited on the layout branch). Delete this package and `torta/rl/policies.py` once replay_env
imports torta.planner.config, torta.planner.register, torta.runs.inputs and torta.rl.learned."""
