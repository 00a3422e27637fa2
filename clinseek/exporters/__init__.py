"""Trajectory exporters. Built-ins are listed in BUILTIN_EXPORTERS and registered by clinseek.builtin.

`export_run(run_dir, fmt, out, **filters)` is the entry point the engine and `clinseek export` call.
"""
from clinseek.exporters.base import Exporter
from clinseek.exporters.hf import HFExporter
from clinseek.exporters.openai import OpenAIExporter
from clinseek.exporters.options import ExportOptions
from clinseek.exporters.run import export_run
from clinseek.exporters.sharegpt import ShareGPTExporter
from clinseek.exporters.trl import TRLExporter

BUILTIN_EXPORTERS: list[type[Exporter]] = [OpenAIExporter, TRLExporter, ShareGPTExporter, HFExporter]

__all__ = ["Exporter", "ExportOptions", "BUILTIN_EXPORTERS", "export_run"]
