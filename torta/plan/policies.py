"""Old path of torta.planner.register (see torta/plan/__init__.py)."""
from torta.planner.register import OTPolicy  # noqa: F401
