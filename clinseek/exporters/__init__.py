"""Trajectory exporters. Built-ins are listed in BUILTIN_EXPORTERS and registered by clinseek.builtin."""
from clinseek.exporters.base import Exporter

BUILTIN_EXPORTERS: list[type[Exporter]] = []

__all__ = ["Exporter", "BUILTIN_EXPORTERS"]
