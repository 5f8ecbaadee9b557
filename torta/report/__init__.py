"""The HTML report: figures (matplotlib, PNG) and tables from plain polars frames. No I/O besides
writing the report folder; the warehouse side lives in `pipelines/report.py`."""

from torta.report.html import ReportInputs, write_report

__all__ = ["ReportInputs", "write_report"]
