"""`clinseek --help` stays fast: building it imports no heavy library (checked in a fresh interpreter)."""
from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pydantic", "jinja2", "duckdb", "numpy", "httpx", "yaml", "sqlglot", "onnxruntime", "torch",
         "qdrant_client", "openai", "anthropic", "pyarrow", "datasets", "psycopg", "asyncio")

PROBE = """
import contextlib, io, json, sys
from clinseek.cli import cli
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        cli.main(["--help"], prog_name="clinseek", standalone_mode=False)
    except SystemExit:
        pass
heavy = sorted(m for m in %r if m in sys.modules)
print(json.dumps({"help": out.getvalue(), "heavy": heavy}))
""" % (HEAVY,)


def test_help_imports_no_heavy_module():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # The help is complete: core commands and the built-in plugins' commands are listed...
    for command in ("validate", "apply", "tasks", "call", "kb", "audit", "cxr"):
        assert f"  {command} " in result["help"], command
    # ...yet none of the libraries that only running a command needs was imported.
    assert result["heavy"] == []


def test_public_api_still_resolves_lazily():
    probe = ("import sys, clinseek; assert 'pydantic' not in sys.modules; "
             "from clinseek import Toolset, Host, Task, tool, hookimpl, UserError; "
             "assert Toolset.__module__ == 'clinseek.toolsets' and 'pydantic' in sys.modules; "
             "print(sorted(set(clinseek.__all__) - set(dir(clinseek))))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
