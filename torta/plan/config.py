"""Old path of torta.planner.config (see torta/plan/__init__.py)."""
from torta.planner.config import OTConfig  # noqa: F401
