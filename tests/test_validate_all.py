"""`clinseek validate` reports every problem in one run (schema, plugin names, toolset configs, preflight checks);
`clinseek tasks` lists qids; `clinseek call` suggests the nearest one; manifests record provenance."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml

from clinseek.cli import main
from spine_fixtures import write_recipe, write_tasks


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


FOUR_DEPTHS = """\
clinseek: 1
name: four-depths
agnet: {max_turns: 3}
host:
  provider: scripted
  scrpt: seek_then_finish
tools:
  - use: notes
    with:
      greting: hi
      max_chars: many
  - use: notez
  - use: ehr
    with:
      database: missing.duckdb
      max_rowz: 5
tasks:
  source: jsonl
  pth: tasks.jsonl
"""


def test_validate_reports_problems_at_every_depth_in_one_run(tmp_path, registry, capsys):
    write_tasks(tmp_path / "tasks.jsonl")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(FOUR_DEPTHS)
    code, out, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and out == "" and "Traceback" not in err
    expected = [
        "recipe.yaml:3:1: agnet: unknown key 'agnet' (did you mean 'agent'?)",
        "recipe.yaml:6:3: host.scrpt: unknown key 'scrpt' (did you mean 'script'?)",
        "recipe.yaml:10:7: tools[0].with.greting: unknown key 'greting' (did you mean 'greeting'?)",
        "recipe.yaml:11:7: tools[0].with.max_chars: expected an integer, got 'many'",
        "recipe.yaml:12:5: unknown toolset 'notez' (did you mean 'notes'?)",
        "recipe.yaml:15:7: tools[2].with.database: EHR database file not found:",  # preflight, same round
        "recipe.yaml:16:7: tools[2].with.max_rowz: unknown key 'max_rowz' (did you mean 'max_rows'?)",
        "recipe.yaml:19:3: tasks.pth: unknown key 'pth' (did you mean 'path'?)",
    ]
    positions = []
    for line in expected:
        assert line in err, line
        positions.append(err.index(line))
    assert positions == sorted(positions)  # in reading order
    assert "needs tasks.path" not in err  # a consequence of the misspelt key, not a second problem


def test_validate_checks_a_postgres_dsn_answers_without_echoing_its_password(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, tools=[{"use": "ehr", "with": {
        "database": "postgresql://alice:pw-s3cret@127.0.0.1:1/mimic"}}])
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and "tools[0].with.database: cannot connect to PostgreSQL" in err
    assert "pw-s3cret" not in err


@pytest.mark.postgres
def test_preflight_passes_for_a_live_postgres_dsn():
    dsn = os.environ.get("CLINSEEK_TEST_PG_DSN")
    if not dsn:
        pytest.skip("CLINSEEK_TEST_PG_DSN is not set (source .ci/start_postgres.sh)")
    from clinseek_ehr.toolset import EhrConfig, EhrToolset

    assert EhrToolset(EhrConfig(database=dsn), None).preflight() == []


class Ctx:
    def __init__(self, folder):
        self.recipe_dir = folder
        self.cache_dir = folder / "cache"


def test_preflight_of_the_built_in_toolsets(tmp_path):
    from clinseek_cxr.card import models_dir
    from clinseek_cxr.toolset import CxrConfig, CxrToolset
    from clinseek_ehr.toolset import EhrConfig, EhrToolset
    from clinseek_kb.config import KbConfig
    from clinseek_kb.toolset import KbToolset

    ctx = Ctx(tmp_path)
    assert EhrToolset(EhrConfig(), ctx).preflight() == []  # demo: is built by open(), not checked
    (tmp_path / "ehr.duckdb").write_bytes(b"")
    assert EhrToolset(EhrConfig(database="ehr.duckdb"), ctx).preflight() == []  # relative to the recipe
    problems = dict(EhrToolset(EhrConfig(database="gone.duckdb", profile="my_profile.yaml"), ctx).preflight())
    assert "my_profile.yaml" in problems["profile"] and "not found" in problems["profile"]
    assert problems["database"] == f"EHR database file not found: {tmp_path / 'gone.duckdb'}"

    assert KbToolset(KbConfig(path="kb", collections=["icd10cm"]), ctx).preflight() == []  # open() builds it
    problems = dict(KbToolset(KbConfig(path="kb", collections=["site_docs"], embedder="./no_model"),
                              ctx).preflight())
    assert "folder not found" in problems["path"] and "site_docs" in problems["path"]
    assert "no_model" in problems["embedder.model"]

    assert CxrToolset(CxrConfig(), ctx).preflight() == []  # the committed phantom card and weights
    card = tmp_path / "card.yaml"
    shutil.copy(models_dir() / "phantom_cxr.yaml", card)  # its weights file is not beside the copy
    problems = dict(CxrToolset(CxrConfig(model="card.yaml", database="cxr.duckdb", image_root="imgs"),
                               ctx).preflight())
    assert problems["model"].startswith("the model card's weights file is missing")
    assert problems["database"].startswith("database file not found")
    assert problems["image_root"] == f"folder not found: {tmp_path / 'imgs'}"
    problems = dict(CxrToolset(CxrConfig(model="nope.yaml"), ctx).preflight())
    assert "model card not found" in problems["model"]


def test_validate_names_set_overrides_in_toolset_configs(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path)
    code, _, err = run_cli(capsys, "validate", str(recipe), "--set", "tools.0.with.max_chars=lots")
    assert code == 2
    assert "--set tools.0.with.max_chars=lots: tools[0].with.max_chars: expected an integer, got 'lots'" in err


def write_mixed_tasks(path):
    rows = [{"qid": f"{kind}-{i}", "subject_id": 100 + i, "hadm_id": 200 + i,
             "prediction_time": f"2150-01-0{i + 1}T12:00:00", "task": kind, "task_type": ttype,
             "question": "?", "candidates": ["yes", "no"], "label": ["yes"]}
            for kind, ttype in (("mortality", "risk_prediction"), ("labs", "lab_order")) for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_tasks_lists_the_selected_qids_with_filters(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path)
    write_mixed_tasks(tmp_path / "tasks.jsonl")
    code, out, err = run_cli(capsys, "tasks", str(recipe))
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == \
        ["mortality-0", "mortality-1", "mortality-2", "labs-0", "labs-1", "labs-2"]
    assert out.splitlines()[0] == "mortality-0\tmortality\trisk_prediction\tsubject 100\thadm 200\t" \
                                  "2150-01-01T12:00:00" and "6 tasks" in err
    code, out, _ = run_cli(capsys, "tasks", str(recipe), "--task-type", "lab_order", "--limit", "2")
    assert [line.split("\t")[0] for line in out.splitlines()] == ["labs-0", "labs-1"]
    code, out, _ = run_cli(capsys, "tasks", str(recipe), "--json", "--qid", "-2")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["qid"] for r in rows] == ["mortality-2", "labs-2"] and all("label" not in r for r in rows)
    # The recipe's own selection applies, unless --all.
    code, out, _ = run_cli(capsys, "tasks", str(recipe), "--set", "tasks.filter.task=[labs]")
    assert len(out.splitlines()) == 3
    code, out, _ = run_cli(capsys, "tasks", str(recipe), "--set", "tasks.filter.task=[labs]", "--all")
    assert len(out.splitlines()) == 6


def test_call_suggests_the_nearest_qid(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path)
    write_mixed_tasks(tmp_path / "tasks.jsonl")
    code, _, err = run_cli(capsys, "call", str(recipe), "notes_echo", "--task", "mortalty-1",
                           "--args", '{"text": "x"}')
    assert code == 2 and "no task with qid 'mortalty-1'" in err and "(did you mean 'mortality-1'?)" in err
    assert "clinseek tasks" in err


def test_manifest_records_provenance_without_site_values(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, host={"provider": "scripted", "script": "seek_then_finish",
                                          "base_url": "${site:url}"})
    site = tmp_path / "site.yaml"
    site.write_text("url: http://127.0.0.1:9/v1\nunused_path: /data/never-referenced\n"
                    "secrets: {greeting: site-secret-greeting}\n")
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet", "--site", str(site),
                           "--set", "agent.max_turns=5", "--set", "tools.0.with.greeting=${site:secrets.greeting}")
    assert code == 0, err
    text = next((tmp_path / "runs").glob("*/manifest.json")).read_text()
    manifest = json.loads(text)
    import hashlib

    assert manifest["site"]["path"] == str(site.resolve())
    assert manifest["site"]["sha256"] == hashlib.sha256(site.read_bytes()).hexdigest()
    assert manifest["overrides"] == [{"key": "agent.max_turns", "value": 5},
                                     {"key": "tools.0.with.greeting", "value": "${site:secrets.greeting}"}]
    assert "site-secret-greeting" not in text and "never-referenced" not in text
    assert manifest["recipe"]["tools"][0]["with"]["greeting"] == "***"
    source = yaml.safe_load(recipe.read_text())
    from clinseek.recipe.load import canonical_sha256

    assert manifest["recipe_source_sha256"] == canonical_sha256(source)
    assert manifest["recipe_source_sha256"] != manifest["recipe_sha256"]


def test_a_missing_site_value_and_typos_are_reported_together(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, host={"provider": "scripted", "base_url": "${site:vllm_url}"},
                          agent={"max_turnz": 3}, tools=[{"use": "notes", "with": {"greeting": "${site:greet}"}}])
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2
    assert "${site:vllm_url} needs a site file" in err and "${site:greet} needs a site file" in err
    assert "agent.max_turnz: unknown key 'max_turnz' (did you mean 'max_turns'?)" in err
    assert "outside the site" not in err and len(err.strip().splitlines()) == 3
