"""`clinseek audit`: zero violations on a correct scope, and it catches a scope that leaks."""
from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from clinseek.cli import cli
from clinseek.toolsets import Binding
from clinseek_ehr.audit import AuditReport, audit_binding
from clinseek_ehr.scope import CUTOFF as CUTOFF_SQL
from clinseek_ehr.scope import PID
from clinseek_ehr.testing import CUTOFF, OTHER, PATIENT, make_fixture_db
from clinseek_ehr.toolset import EhrConfig, EhrToolset


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    make_fixture_db(d / "fixture.duckdb")
    lines = []
    for i, (pid, days) in enumerate([(PATIENT, 0), (PATIENT, 1), (PATIENT, -200), (OTHER, 0), (OTHER + 1, 30)]):
        t = (CUTOFF + timedelta(days=days)).isoformat()
        lines.append(json.dumps({"qid": f"q{i}", "subject_id": pid, "prediction_time": t, "task": "demo",
                                 "question": "?"}))
    (d / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    (d / "recipe.yaml").write_text(
        "clinseek: 1\nname: audit-test\nhost: {provider: rules}\n"
        "tools:\n  - use: ehr\n    with: {database: fixture.duckdb}\n"
        "tasks: {source: jsonl, path: tasks.jsonl}\n")
    return d / "recipe.yaml"


@pytest.fixture
def toolset(recipe):
    ts = EhrToolset(EhrConfig(database=str(recipe.parent / "fixture.duckdb")), None)
    ts.open()
    yield ts
    ts.close()


def test_audit_command_reports_zero_violations(recipe):
    result = CliRunner().invoke(cli, ["audit", str(recipe)])
    assert result.exit_code == 0, result.output
    assert "0 violations in 5 task(s)" in result.output
    assert "labevents|" in result.output and "total|" in result.output


def test_parallel_audit_counts_like_the_sequential_one(recipe, toolset):
    import json as _json

    from clinseek.tasks import Task
    from clinseek_ehr.audit import audit_tasks

    tasks = [Task.model_validate(_json.loads(line)) for line in (recipe.parent / "tasks.jsonl").read_text().splitlines()]
    one, many = audit_tasks(toolset, tasks), audit_tasks(toolset, tasks, workers=3)
    assert many.tasks == one.tasks == 5
    assert {k: vars(v) for k, v in many.tables.items()} == {k: vars(v) for k, v in one.tables.items()}


def test_audit_command_json_and_limit(recipe):
    result = CliRunner().invoke(cli, ["audit", str(recipe), "--json", "--limit", "2", "--workers", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tasks"] == 2 and data["violations"] == 0
    assert data["tables"]["labevents"]["rows"] > 0


def test_audit_command_needs_an_ehr_toolset(tmp_path):
    (tmp_path / "r.yaml").write_text("clinseek: 1\nname: x\nhost: {provider: rules}\n")
    from clinseek.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["audit", str(tmp_path / "r.yaml")])
    assert exc.value.code == 2


def _audit(ts, pid=PATIENT, cutoff=CUTOFF) -> AuditReport:
    report = AuditReport()
    audit_binding(ts, Binding(qid="t", subject_id=pid, hadm_id=None, prediction_time=cutoff), report)
    report.tasks = 1
    return report


def _break(ts, table, old, new):
    scope = ts.scope.tables[table]
    assert old in scope.template
    ts.scope.tables[table] = dataclasses.replace(scope, template=scope.template.replace(old, new))


def test_audit_catches_rows_of_other_patients(toolset):
    _break(toolset, "labevents", f"labevents.subject_id = {PID} AND", "")
    report = _audit(toolset)
    assert report.tables["labevents"].other_patients == 9   # 3 known rows of each of 3 others
    assert report.tables["admissions"].violations == 0


def test_audit_catches_rows_after_the_cutoff(toolset):
    _break(toolset, "diagnoses_icd", f"<= {CUTOFF_SQL}", f"> {CUTOFF_SQL}")     # rows known only after the cutoff
    report = _audit(toolset)
    assert report.tables["diagnoses_icd"].future_rows >= 1
    assert report.violations == report.tables["diagnoses_icd"].future_rows


def test_audit_catches_an_unmasked_column(toolset):
    scope = toolset.scope.tables["admissions"]
    old = next(part for part in scope.template.split(", ") if part.endswith("AS discharge_location"))
    _break(toolset, "admissions", old, "admissions.discharge_location AS discharge_location")
    report = _audit(toolset)
    assert report.tables["admissions"].unmasked == 1 and report.tables["admissions"].future_rows == 0
    assert "unmasked discharge_location" in report.render()


def test_audit_command_exits_1_on_a_leaky_profile(recipe):
    """A profile that filters labs by charttime only (as the reference system does) shows results released after
    the cutoff: the profile-independent time check catches it and the command fails."""
    d = recipe.parent
    (d / "leaky.yaml").write_text(
        "patient_key: subject_id\ntables:\n  labevents:\n    known_at: [charttime]\n"
        "    columns: {labevent_id: id, subject_id: patient, charttime: drawn, storetime: released, valuenum: v}\n")
    (d / "leaky-recipe.yaml").write_text(
        "clinseek: 1\nname: leaky\nhost: {provider: rules}\n"
        "tools:\n  - use: ehr\n    with: {database: fixture.duckdb, profile: leaky.yaml}\n"
        "tasks: {source: jsonl, path: tasks.jsonl}\n")
    result = CliRunner().invoke(cli, ["audit", str(d / "leaky-recipe.yaml")])
    assert result.exit_code == 1, result.output
    assert "labevents|" in result.output and "row after the cutoff" in result.output
    strict = CliRunner().invoke(cli, ["audit", str(recipe), "--set", "tools.0.with.cutoff=strict"])
    assert strict.exit_code == 0, strict.output
