"""The run report: one self-contained HTML file (inline CSS and JS, no network) with scores, usage, cost,
latency, the tool-call distribution and an episode viewer."""
from clinseek.report.html import build_report_data, write_report

__all__ = ["build_report_data", "write_report"]
