"""Helpers that write small task files and recipes for the engine tests."""
from __future__ import annotations

import json
from pathlib import Path

import yaml


def write_tasks(path: Path, n: int = 3, **overrides) -> Path:
    rows = []
    for i in range(n):
        rows.append({"qid": f"q{i}", "subject_id": 1000 + i, "hadm_id": 2000 + i,
                     "prediction_time": f"2150-01-0{i + 1}T12:00:00", "task": "mortality",
                     "task_type": "risk_prediction", "question": "Will the patient die in hospital?",
                     "candidates": ["yes", "no"], "label": ["yes" if i % 2 == 0 else "no"], **overrides})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_recipe(folder: Path, name: str = "recipe.yaml", **fields) -> Path:
    tasks = write_tasks(folder / "tasks.jsonl", n=fields.pop("n_tasks", 3))
    recipe = {
        "clinseek": 1,
        "name": "spine-test",
        "host": {"provider": "scripted", "script": "seek_then_finish"},
        "tools": [{"use": "notes", "with": {"greeting": "hello"}}],
        "tasks": {"source": "jsonl", "path": tasks.name},
        "output": {"dir": str(folder / "runs"), "report": False},
    }
    for key, value in fields.items():
        recipe[key] = value
    path = folder / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
