"""Every recipe the project ships validates: the demo pair as is, the ClinSeek-Bench pair with a site file."""
from __future__ import annotations

import pytest

from clinseek.cli import main

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["demo.yaml", "demo-curated.yaml"])
def test_demo_recipes_validate(name, capsys):
    code, out, err = run_cli(capsys, "validate", str(ROOT / "recipes" / name))
    assert code == 0, err
    assert "rules host" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clinseek-bench-seek.yaml", "clinseek-bench-curated.yaml"])
def test_clinseek_bench_recipes_validate_with_a_site_file(name, tmp_path, capsys):
    from clinseek_demo.demo import ensure_demo

    demo = ensure_demo()
    site = tmp_path / "site.yaml"
    site.write_text(f"mimic_duckdb: {demo.db}\nbench_tasks: {demo.tasks}\nvllm_url: http://127.0.0.1:8000/v1\n"
                    "vllm_model: Qwen/Qwen3-32B\n")
    code, out, err = run_cli(capsys, "validate", str(ROOT / "recipes" / name), "--site", str(site))
    assert code == 0, err
    # Without the site file every site key is named, with where it is used.
    code, _, err = run_cli(capsys, "validate", str(ROOT / "recipes" / name))
    assert code == 2 and "vllm_url" in err and "--site" in err


def test_example_plugin_recipe_is_well_formed(capsys):
    from clinseek.recipe import load_recipe

    loaded = load_recipe(ROOT / "examples" / "clinseek-sitenotes" / "recipe.yaml")
    assert loaded.recipe.host.provider == "keyword" and loaded.recipe.tools[0].use == "sitenotes"


@pytest.mark.slow
def test_demo_llm_validates_and_apply_without_the_model_says_how_to_get_it(tmp_path, capsys):
    code, out, err = run_cli(capsys, "validate", str(ROOT / "recipes" / "demo-llm.yaml"))
    assert code == 0, err
    # the session's cache has no model: apply stops before any episode, writes nothing, names the command
    code, out, err = run_cli(capsys, "apply", str(ROOT / "recipes" / "demo-llm.yaml"), "--out", str(tmp_path))
    assert code == 2
    assert ("clinseek models get qwen2.5-coder-1.5b-instruct" in err or "needs the llama.cpp runtime" in err), err
    assert list(tmp_path.iterdir()) == []
