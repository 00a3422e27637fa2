"""Prompt templates: where they may come from (issue 21) and how far rendering may go.

Includes reach only the declared templates' folders and the shipped prompts, only .j2/.jinja files, never the site
file; rendering is bounded in time, output, range() size and the size of what a template can make. Every refusal is
one UserError (exit 2) that names the template and says what to do.
"""
from __future__ import annotations

import json
import os

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from clinseek.cli import main
from clinseek.errors import UserError
from clinseek.prompts import DEFAULTS_DIR, PromptSet, RenderLimits
from spine_fixtures import write_recipe

SECRET = "sk-site-0123456789abcdef"
CONTEXT = {"task": {"qid": "q0", "prediction_time": "2150-01-01 12:00"}, "question": "Will the patient die?",
           "candidates": ["yes", "no"], "tools": [], "tool_names": ["kb_search"], "evidence": "E",
           "mode": "seek", "recipe": {"name": "r", "description": ""}}


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def render(folder, source, limits=None, name="sys.j2", **context):
    (folder / name).write_text(source)
    prompts = PromptSet(folder, name, None, where={"system": "recipe.yaml:9:11"}, limits=limits)
    return prompts.render_one("system", {**CONTEXT, **context})


def refusal(folder, source, limits=None, **context) -> str:
    with pytest.raises(UserError) as info:
        render(folder, source, limits, **context)
    text = info.value.render()
    assert text.startswith("recipe.yaml:9:11: prompts.system (sys.j2"), text  # names the recipe line and template
    assert len([line for line in text.splitlines() if not line.startswith("  hint:")]) == 1, text
    return text


# Where templates come from ------------------------------------------------------------------------------------
@pytest.mark.parametrize("include, expected", [
    ("/etc/passwd", "'/etc/passwd' is an absolute path"),
    ("../outside.j2", "'../outside.j2' leaves the template folders"),
    ("parts/../../outside.j2", "leaves the template folders"),
    ("site.yaml", "'site.yaml' is not a template: only .j2 and .jinja files"),
    ("notes.txt", "is not a template"),
])
def test_includes_outside_the_template_files_are_refused_with_one_message(tmp_path, include, expected):
    recipe_dir = tmp_path / "recipe"
    recipe_dir.mkdir()
    (tmp_path / "outside.j2").write_text("outside")
    (recipe_dir / "site.yaml").write_text(f"secrets:\n  key: {SECRET}\n")
    (recipe_dir / "notes.txt").write_text("notes")
    text = refusal(recipe_dir, f"Hello {{% include '{include}' %}}")
    assert expected in text and "sys.j2 line 1" in text and "hint:" in text
    assert SECRET not in text


def test_a_refused_include_is_reported_by_validate_with_exit_2_and_nothing_leaks(tmp_path, registry, capsys):
    (tmp_path / "site.yaml").write_text(f"secrets:\n  key: {SECRET}\n")
    (tmp_path / "sys.j2").write_text("Patient {{ task.subject_id }}\n{% include 'site.yaml' %}")
    recipe = write_recipe(tmp_path, prompts={"system": "sys.j2"})
    code, out, err = run_cli(capsys, "validate", str(recipe), "--site", str(tmp_path / "site.yaml"))
    assert code == 2
    assert "prompts.system (sys.j2 line 2): template 'site.yaml' is not a template" in err
    assert "Traceback" not in err and SECRET not in err + out
    code, out, err = run_cli(capsys, "apply", str(recipe), "--site", str(tmp_path / "site.yaml"))
    assert code == 2 and not (tmp_path / "runs").exists()  # no trajectories.jsonl to leak into


def test_ignore_missing_does_not_hide_a_refused_include(tmp_path):
    text = refusal(tmp_path, "{% include '/etc/passwd' ignore missing %}")
    assert "absolute path" in text


def test_a_name_computed_at_render_time_is_checked_when_it_is_loaded(tmp_path):
    text = refusal(tmp_path, "{% set n = '/etc/' ~ 'passwd' %}{% include n %}")
    assert "'/etc/passwd' is an absolute path" in text


def test_the_site_file_is_refused_whatever_its_name(tmp_path, registry, capsys):
    site = tmp_path / "hospital.j2"  # a site file that looks like a template
    site.write_text(f"vllm_url: http://10.0.0.7:8000/v1\nsecrets:\n  key: {SECRET}\n")
    (tmp_path / "sys.j2").write_text("Patient {{ task.subject_id }} {% include 'hospital.j2' %}")
    recipe = write_recipe(tmp_path, prompts={"system": "sys.j2"})
    code, out, err = run_cli(capsys, "validate", str(recipe), "--site", str(site))
    assert code == 2 and "template 'hospital.j2' is the site file" in err and SECRET not in err + out
    # A copy elsewhere is recognised by its content, and so is a template holding one of the site's secrets.
    (tmp_path / "copy.j2").write_text(site.read_text())
    (tmp_path / "leak.j2").write_text(f"the key is {SECRET}")
    prompts = PromptSet(tmp_path, "sys.j2", None)
    for name, expected in (("copy.j2", "is the site file"), ("leak.j2", "contains a secret from the site file")):
        (tmp_path / "sys.j2").write_text(f"{{% include '{name}' %}}")
        with pytest.raises(UserError, match=expected):
            prompts.protect({"vllm_url": "http://10.0.0.7:8000/v1", "secrets": {"key": SECRET}}, set())


def test_templates_do_not_climb_to_prompts_folders_above_the_recipe(tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "shared.j2").write_text("from above")
    recipe_dir = tmp_path / "a" / "b"
    recipe_dir.mkdir(parents=True)
    with pytest.raises(UserError, match="template 'shared.j2' not found"):
        render(recipe_dir, "{% include 'shared.j2' %}")
    with pytest.raises(UserError, match="template 'shared.j2' not found"):
        PromptSet(recipe_dir, "shared.j2", None)


def test_includes_resolve_in_the_declared_folders_and_the_shipped_prompts(tmp_path):
    (tmp_path / "prompts" / "parts").mkdir(parents=True)
    (tmp_path / "prompts" / "parts" / "header.jinja").write_text("HEADER for {{ question }}")
    (tmp_path / "prompts" / "sys.j2").write_text("{% include 'parts/header.jinja' %}\n{% include 'seek_user.j2' %}")
    prompts = PromptSet(tmp_path, "prompts/sys.j2", None)
    text = prompts.render_one("system", CONTEXT)
    assert text.startswith("HEADER for Will the patient die?") and "Candidates" in text


def test_a_link_out_of_the_template_folder_is_refused(tmp_path):
    (tmp_path / "secret.yaml").write_text("x: 1")
    recipe_dir = tmp_path / "r"
    recipe_dir.mkdir()
    os.symlink(tmp_path / "secret.yaml", recipe_dir / "inner.j2")
    assert "is a link to" in refusal(recipe_dir, "{% include 'inner.j2' %}")


def test_a_declared_template_that_links_out_of_its_folder_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "real.j2").write_text("{% include 'other.j2' %}")
    (tmp_path / "elsewhere" / "other.j2").write_text("other")
    recipe_dir = tmp_path / "r"
    recipe_dir.mkdir()
    os.symlink(tmp_path / "elsewhere" / "real.j2", recipe_dir / "sys.j2")
    with pytest.raises(UserError, match="'sys.j2' is a link to"):
        PromptSet(recipe_dir, "sys.j2", None)


@pytest.mark.parametrize("declared, expected", [
    ("/etc/passwd.j2", "is an absolute path"),
    ("site.yaml", "is not a template"),
])
def test_declared_templates_must_be_relative_template_files(tmp_path, declared, expected):
    (tmp_path / "site.yaml").write_text("a: 1")
    with pytest.raises(UserError, match=expected):
        PromptSet(tmp_path, declared, None)


# Bounds on rendering ------------------------------------------------------------------------------------------
def test_a_huge_range_is_one_clear_error(tmp_path):
    text = refusal(tmp_path, "{% for i in range(10 ** 9) %}{{ i }}{% endfor %}")
    assert "range() of 1,000,000,000 items is over the template limit of 100,000" in text


def test_string_and_list_multiplication_are_bounded(tmp_path):
    assert "over the template limit" in refusal(tmp_path, "{{ 'x' * 10 ** 12 }}")
    assert "over the template limit" in refusal(tmp_path, "{{ ['x'] * 10 ** 9 }}")
    # Within the bound, multiplication works as before.
    assert render(tmp_path, "{{ 'ab' * 3 }}|{{ [1] * 2 }}") == "ababab|[1, 1]"


def test_nested_loops_stop_at_the_time_limit(tmp_path):
    source = "{% set r = range(100000) %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}"
    text = refusal(tmp_path, source, RenderLimits(time_s=0.2))
    assert "longer than the template time limit of 0.2 s" in text


def test_a_recursive_macro_that_never_ends_stops_at_the_time_limit(tmp_path):
    source = ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}")
    assert "time limit" in refusal(tmp_path, source, RenderLimits(time_s=0.2))


def test_the_rendered_text_is_bounded(tmp_path):
    limits = RenderLimits(max_chars=10_000)
    text = refusal(tmp_path, "{% for i in range(5000) %}line {{ i }}\n{% endfor %}", limits)
    assert "the rendered text is over the template limit of 10,000 characters" in text
    # Text gathered in {% set %} blocks and macros counts too.
    text = refusal(tmp_path, "{% set b %}{% for i in range(5000) %}xxxxx{% endfor %}{% endset %}{{ b|length }}",
                   limits)
    assert "over the template limit of 10,000" in text


@pytest.mark.parametrize("source", [
    "{{ '%0999999999d' % 1 }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '{a:>999999999}'.format_map({'a': 1}) }}",
    "{{ '{:{w}}'.format('x', w=10 ** 9) }}",
    "{{ '%*d' % (10 ** 9, 1) }}",
    "{{ '%s'|format(1)|center(10 ** 9) }}",
    "{{ 'x'.zfill(10 ** 9) }}",
    "{{ 'x'|center(10 ** 9) }}",
    "{{ 'x'.ljust(10 ** 9) }}",
    "{% set s = 'x' * 100000 %}{{ s.join(s) }}",
    "{% set s = 'x' * 100000 %}{{ s|replace('x', s) }}",
    "{% set s = 'x' * 100000 %}{{ s.replace('x', s) }}",
    "{% set s = 'x\n' * 100000 %}{{ s|indent(100000) }}",
    "{% set s = '\t' * 100000 %}{{ s.expandtabs(100000) }}",
    "{% set s = 'x' * 100000 %}{{ [s] * 100000 }}",
    "{% set s = 'x' * 100000 %}{{ ([s] * 100000)|join }}",
    "{% set s = 'x' * 100000 %}{{ ([s] * 100000) ~ '' }}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{{ 2 ** 100000 }}",
    "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
])
def test_values_too_big_to_make_are_refused_before_they_are_made(tmp_path, source):
    assert "over the template limit" in refusal(tmp_path, source)


@pytest.mark.parametrize("source, expected", [
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "call themselves too deeply"),
    ("{% include 'sys.j2' %}", "include, extend or call themselves too deeply"),
    ("{{ 1 // 0 }}", "the template failed: ZeroDivisionError"),
    ("{{ lipsum(10 ** 6) }}", "'lipsum' is undefined"),
    ("{% include 'nowhere.j2' ignore missing %}{% include ['a.j2', 'b.j2'] %}", "not found"),
])
def test_other_template_failures_are_one_message(tmp_path, source, expected):
    assert expected in refusal(tmp_path, source)


def test_validate_reports_a_render_bound_with_exit_2(tmp_path, registry, capsys):
    (tmp_path / "sys.j2").write_text("{{ 'x' * 10 ** 12 }}")
    recipe = write_recipe(tmp_path, prompts={"system": "sys.j2"})
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and "over the template limit" in err and "Traceback" not in err


def test_ordinary_templates_render_as_plain_jinja_does(tmp_path):
    source = ("{% for i in range(3) %}{{ loop.index }}/{{ loop.length }}{{ loop.cycle('a', 'b') }} {% endfor %}"
              "{% for k, v in {'b': 1, 'a': 2}|dictsort %}{{ k }}={{ v }};{% endfor %}"
              "{% for x in [[1, [2]], [3]] recursive %}<{% if x is iterable %}{{ loop(x) }}{% else %}{{ x }}"
              "{% endif %}>{% endfor %}{% for x in [] %}{% else %}empty{% endfor %} {{ 'ab'|center(6) }}|"
              "{{ '%5.1f' % 3.14159 }}|{{ '{:>4}'.format('z') }}|{{ ['a', 'b']|join(', ') }}|{{ 2 ** 10 }}|"
              "{{ question|upper }}|{{ candidates|tojson }}|{{ 'a' ~ 1 }}|"
              # numbers that are values, not widths: MIMIC ids are 8 digits
              "{{ 'subject {} of 10000032'.format(10000032) }}|{{ 'hadm %d %s' % (22595853, 'x') }}|"
              "{{ '%s'|format(10000032) }}|{{ '%08.2f' % 5 }}|{{ '{:>6}|{:{w}}'.format('a', 'b', w=3) }}|"
              "{{ 'a,b'.split(',', 20000000) }}|{{ ('x' * 10)|truncate(20000000) }}")
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)
    assert render(tmp_path, source) == plain.render(**CONTEXT).strip()


@pytest.mark.parametrize("mode", ["seek", "curated"])
def test_the_shipped_prompts_render_as_before(mode):
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    plain.filters["tojson_compact"] = lambda v: json.dumps(v, ensure_ascii=False)
    prompts = PromptSet(DEFAULTS_DIR, None, None, mode=mode)
    for role in ("system", "user"):
        expected = plain.from_string((DEFAULTS_DIR / prompts.names[role]).read_text()).render(**CONTEXT).strip()
        assert prompts.render_one(role, CONTEXT) == expected


def test_limits_hold_per_render_across_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "slow.j2").write_text("{% set r = range(100000) %}{% for a in r %}{% for b in r %}{% endfor %}"
                                      "{% endfor %}")
    (tmp_path / "fast.j2").write_text("{% for i in range(100) %}{{ i }}{% endfor %}")
    slow = PromptSet(tmp_path, "slow.j2", None, limits=RenderLimits(time_s=0.3))
    fast = PromptSet(tmp_path, "fast.j2", None, limits=RenderLimits(time_s=60))
    with ThreadPoolExecutor(4) as pool:
        slow_runs = [pool.submit(slow.render_one, "system", CONTEXT) for _ in range(2)]
        fast_runs = [pool.submit(fast.render_one, "system", CONTEXT) for _ in range(8)]
        assert all(f.result().startswith("0123") for f in fast_runs)
        for f in slow_runs:
            with pytest.raises(UserError, match="time limit"):
                f.result()


def test_importing_prompts_does_not_import_jinja():
    import subprocess
    import sys

    code = "import sys, clinseek.prompts; print('jinja2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
