"""`clinseek kb build|ingest|search|info RECIPE`, through the real CLI entry point."""
from __future__ import annotations

import pytest

from clinseek.cli import main

RECIPE = """clinseek: 1
name: kb-cli-test
host: {provider: rules}
tools:
  - use: kb
    with:
      path: kb
      collections: [reference, icd10cm, protocols]
      icd10cm_chapters: [22]
      limit: 3
"""


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINSEEK_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return path


def test_build_ingest_search_info(recipe, tmp_path, capsys):
    code, out, err = run(capsys, "kb", "build", str(recipe))
    assert code == 0, err
    assert "reference: " in out and "built in" in out and "protocols: 0 chunks" in out
    assert (tmp_path / "kb").is_dir()  # path is relative to the recipe
    code, out, _ = run(capsys, "kb", "build", str(recipe))
    assert out.count("up to date") == 3

    doc = tmp_path / "dka.md"
    doc.write_text("# Ward protocols\n\n## Diabetic ketoacidosis\n\nStart fixed-rate insulin at 0.1 units/kg/h.\n")
    code, out, err = run(capsys, "kb", "ingest", str(recipe), "--collection", "protocols", str(doc))
    assert code == 0, err
    assert "protocols: 1 chunks from 1 file(s); 1 in the collection" in out

    code, out, err = run(capsys, "kb", "search", str(recipe), "insulin ketoacidosis", "--collection", "protocols")
    assert code == 0, err
    assert "Ward protocols > Diabetic ketoacidosis" in out and "source: dka.md" in out

    code, out, _ = run(capsys, "kb", "search", str(recipe), "septic shock lactate", "--limit", "1")
    assert out.startswith('1 passage(s) for "septic shock lactate"') and "Sepsis-3" in out

    code, out, _ = run(capsys, "kb", "info", str(recipe))
    assert "protocols: 1 points" in out and "none (sparse only)" in out and "complete" in out


def test_user_errors_exit_2_with_one_message(recipe, tmp_path, capsys):
    code, _, err = run(capsys, "kb", "search", str(recipe), "x", "--collection", "web")
    assert code == 2 and "unknown collection 'web'" in err and "Traceback" not in err
    code, _, err = run(capsys, "kb", "ingest", str(recipe), "--collection", "protocols", str(tmp_path / "no.md"))
    assert code == 2 and "no such file or folder" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(RECIPE.replace("limit: 3", "limitt: 3"))
    code, _, err = run(capsys, "kb", "build", str(bad))
    assert code == 2 and "invalid kb settings" in err and "limitt" in err
    none = tmp_path / "none.yaml"
    none.write_text("clinseek: 1\nname: x\nhost: {provider: rules}\n")
    code, _, err = run(capsys, "kb", "build", str(none))
    assert code == 2 and "no kb tool" in err


def test_kb_group_is_listed_by_the_cli(capsys):
    code, out, _ = run(capsys, "kb", "--help")
    assert code == 0
    for sub in ("build", "ingest", "search", "info"):
        assert sub in out
    code, out, _ = run(capsys, "--help")
    assert code == 0 and " kb " in out
