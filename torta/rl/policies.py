"""Old path of torta.rl.learned, kept only for torta/rl/replay_env.py (see torta/plan/__init__.py)."""
from torta.rl.learned import RLPolicy  # noqa: F401
