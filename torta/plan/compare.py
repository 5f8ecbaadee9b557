"""Old path of torta.runs.inputs.multiday_input (see torta/plan/__init__.py)."""
from torta.runs.inputs import multiday_input  # noqa: F401
