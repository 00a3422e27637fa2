"""Recipe loading: line-marked errors, extends, interpolation, overrides, secrets."""
from __future__ import annotations

import json

import pytest

from clinseek.errors import UserError, UserErrors
from clinseek.recipe import load_recipe


def write(path, text):
    path.write_text(text)
    return path


BASE = """\
clinseek: 1
name: base
host:
  provider: scripted
tools:
  - use: notes
    with:
      max_chars: 500
agent:
  max_turns: 7
"""


def test_all_errors_reported_with_file_line_and_column(tmp_path):
    recipe = write(tmp_path / "r.yaml", """\
clinseek: 1
name: x
host: {provider: scripted}
tools:
  - use: notes
    with: {max_chars: 5}
agnet: {}
agent:
  max_turn: 3
  timeout_s: soon
""")
    with pytest.raises(UserErrors) as info:
        load_recipe(recipe)
    lines = info.value.problems
    assert len(lines) == 3
    assert lines[0].endswith("r.yaml:7:1: agnet: unknown key 'agnet' (did you mean 'agent'?)")
    assert lines[1].endswith("r.yaml:9:3: agent.max_turn: unknown key 'max_turn' (did you mean 'max_turns'?)")
    assert lines[2].endswith("r.yaml:10:3: agent.timeout_s: expected a number, got 'soon'")


def test_yaml_syntax_error_names_position(tmp_path):
    recipe = write(tmp_path / "bad.yaml", "clinseek: 1\nname: [unclosed\nhost: x\n")
    with pytest.raises(UserError) as info:
        load_recipe(recipe)
    assert "bad.yaml:3:" in info.value.render() and "invalid YAML" in info.value.render()


def test_extends_merges_deeply_and_marks_each_file(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    child = write(tmp_path / "child.yaml", """\
extends: base.yaml
name: child
agent:
  timeout_s: 30
""")
    loaded = load_recipe(child)
    assert loaded.recipe.name == "child"
    assert loaded.recipe.agent.max_turns == 7 and loaded.recipe.agent.timeout_s == 30
    assert loaded.recipe.tools[0].with_ == {"max_chars": 500}
    bad_child = write(tmp_path / "bad_child.yaml", "extends: base.yaml\nagent:\n  max_turns: lots\n")
    write(tmp_path / "base_bad.yaml", BASE.replace("max_turns: 7", "max_turns: 7\n  bogus: 1"))
    with pytest.raises(UserErrors) as info:
        load_recipe(bad_child)
    assert "bad_child.yaml:3:3: agent.max_turns: expected an integer, got 'lots'" in info.value.problems[0]
    child2 = write(tmp_path / "child2.yaml", "extends: base_bad.yaml\nname: c2\n")
    with pytest.raises(UserErrors) as info:
        load_recipe(child2)
    # The problem sits in the file that extends pulled in, and is named with that file's own line.
    assert "base_bad.yaml:11:3: agent.bogus: unknown key 'bogus'" in info.value.problems[0]


def test_extends_cycle_is_refused(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(UserError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")


def test_env_and_site_interpolation_with_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("CS_TURNS", "9")
    monkeypatch.delenv("CS_MISSING", raising=False)
    recipe = write(tmp_path / "r.yaml", """\
clinseek: 1
name: "${env:CS_MISSING:-fallback}"
host:
  provider: scripted
  base_url: "http://${site:server.host}:8000/v1"
agent:
  max_turns: ${env:CS_TURNS}
  timeout_s: ${site:timeout}
""")
    site = write(tmp_path / "site.yaml", "server: {host: 10.0.0.5}\ntimeout: 45\n")
    loaded = load_recipe(recipe, site=site)
    assert loaded.recipe.name == "fallback"
    assert loaded.recipe.agent.max_turns == 9
    assert loaded.recipe.agent.timeout_s == 45
    assert loaded.data["host"]["base_url"] == "http://10.0.0.5:8000/v1"


def test_missing_env_and_site_keys_are_reported_together(tmp_path, monkeypatch):
    monkeypatch.delenv("CS_NOPE", raising=False)
    recipe = write(tmp_path / "r.yaml", "clinseek: 1\nname: ${env:CS_NOPE}\nhost:\n  provider: ${site:prov}\n")
    with pytest.raises(UserErrors) as info:
        load_recipe(recipe)
    text = "\n".join(info.value.problems)
    assert "r.yaml:2:1" in text and "CS_NOPE is not set" in text
    assert "r.yaml:4:3" in text and "--site" in text


def test_secrets_never_reach_manifest_or_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CS_API_KEY", "sk-very-secret-123")
    recipe = write(tmp_path / "r.yaml", """\
clinseek: 1
name: s
host:
  provider: scripted
  api_key: ${env:CS_API_KEY}
  base_url: postgresql://user:${site:db_password}@db/x
""")
    site = write(tmp_path / "site.yaml", "db_password: hunter2-pass\n")
    loaded = load_recipe(recipe, site=site)
    dumped = json.dumps(loaded.redacted())
    assert "sk-very-secret-123" not in dumped and "hunter2-pass" not in dumped
    assert "***" in dumped
    # A bad value next to a secret: the error message must not echo it.
    bad = write(tmp_path / "bad.yaml", "clinseek: 1\nname: s\nhost:\n  provider: scripted\nagent:\n"
                                       "  max_turns: ${env:CS_API_KEY}\n")
    with pytest.raises(UserErrors) as info:
        load_recipe(bad)
    assert "sk-very-secret-123" not in info.value.render()


def test_set_overrides_any_field(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    loaded = load_recipe(tmp_path / "base.yaml",
                         overrides=["agent.max_turns=3", "tools.0.with.max_chars=9", "runs_per_task=2"])
    assert loaded.recipe.agent.max_turns == 3
    assert loaded.recipe.tools[0].with_["max_chars"] == 9
    assert loaded.recipe.runs_per_task == 2
    with pytest.raises(UserErrors) as info:
        load_recipe(tmp_path / "base.yaml", overrides=["agent.max_turns=many"])
    assert "--set agent.max_turns" in info.value.problems[0]


def test_recipe_sha_changes_with_content_but_not_secret_values(tmp_path, monkeypatch):
    write(tmp_path / "base.yaml", BASE)
    a = load_recipe(tmp_path / "base.yaml").sha256
    b = load_recipe(tmp_path / "base.yaml", overrides=["agent.max_turns=8"]).sha256
    assert a != b and len(a) == 64


def test_set_errors_name_the_override_not_a_file_position(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    with pytest.raises(UserErrors) as info:
        load_recipe(tmp_path / "base.yaml", overrides=["agent.max_turns=many", "agent.timeout_s={soon: 1}"])
    lines = info.value.problems
    assert lines == ["--set agent.max_turns=many: agent.max_turns: expected an integer, got 'many'",
                     "--set agent.timeout_s={soon: 1}: agent.timeout_s: expected a number, got a mapping"]
    with pytest.raises(UserError) as one:
        load_recipe(tmp_path / "base.yaml", overrides=["tools.3.with.max_chars=1"])
    assert one.value.render().startswith("--set tools.3.with.max_chars=1: index 3 is out of range")
    with pytest.raises(UserErrors) as info:  # a secret-looking key is not echoed
        load_recipe(tmp_path / "base.yaml", overrides=["agent.api_key=sk-abc-123"])
    assert "--set agent.api_key=***: agent.api_key: unknown key" in info.value.problems[0]
    assert "sk-abc-123" not in info.value.render()


def test_provenance_records_site_file_overrides_and_the_shared_recipe_hash(tmp_path, monkeypatch):
    with_url = BASE.replace("  provider: scripted\n", "  provider: scripted\n  base_url: ${site:url}\n")
    write(tmp_path / "base.yaml", with_url)
    site_a = write(tmp_path / "site_a.yaml", "url: http://10.0.0.1/v1\nsecrets: {token: tok-site-a-999}\n")
    site_b = write(tmp_path / "site_b.yaml", "url: http://10.9.9.9/v1\n")
    a = load_recipe(tmp_path / "base.yaml", site=site_a,
                    overrides=["agent.max_turns=3", "host.api_key=sk-typed-1", "description=tok-site-a-999"])
    b = load_recipe(tmp_path / "base.yaml", site=site_b)
    prov = a.provenance()
    import hashlib

    assert prov["site"] == {"path": str(site_a.resolve()),
                            "sha256": hashlib.sha256(site_a.read_bytes()).hexdigest()}
    assert prov["overrides"] == [{"key": "agent.max_turns", "value": 3}, {"key": "host.api_key", "value": "***"},
                                 {"key": "description", "value": "***"}]  # a site secret, typed by hand
    dumped = json.dumps(prov)
    assert "10.0.0.1" not in dumped and "tok-site-a-999" not in dumped and "sk-typed-1" not in dumped
    # Same shared recipe at two sites (other site values, other overrides): same source hash; resolved differs.
    assert a.source_sha256 == b.source_sha256 and len(a.source_sha256) == 64
    assert a.sha256 != b.sha256
    assert b.provenance()["overrides"] == []
    # Canonical: the same recipe split over extends, re-ordered and re-formatted hashes the same.
    write(tmp_path / "part.yaml", "clinseek: 1\nagent: {max_turns: 7}\nhost: {base_url: '${site:url}'}\n")
    write(tmp_path / "split.yaml", "extends: part.yaml\nname: base\ntools: [{use: notes, with: {max_chars: 500}}]\n"
                                   "host: {provider: scripted}\n")
    assert load_recipe(tmp_path / "split.yaml", site=site_b).source_sha256 == b.source_sha256
    write(tmp_path / "changed.yaml", with_url.replace("max_turns: 7", "max_turns: 8"))
    assert load_recipe(tmp_path / "changed.yaml", site=site_b).source_sha256 != b.source_sha256


def test_collect_mode_returns_every_problem_and_a_best_effort_recipe(tmp_path, monkeypatch):
    monkeypatch.delenv("CS_NOPE", raising=False)
    recipe = write(tmp_path / "r.yaml", """\
clinseek: 2
host: {provider: scripted, base_url: "${env:CS_NOPE}"}
tools:
  - use: notes
    wiht: {}
  - 5
agent: {max_turns: lots, timout_s: 3}
""")
    loaded = load_recipe(recipe, collect=True)
    text = "\n".join(loaded.problems)
    for expected in ("r.yaml:1:1: clinseek: expected one of 1", "r.yaml:2:", "CS_NOPE is not set",
                     "required key 'name' is missing", "r.yaml:5:5: tools[0].wiht: unknown key 'wiht'",
                     "r.yaml:6:5: tools[1]: expected a mapping", "r.yaml:7:9: agent.max_turns",
                     "r.yaml:7:26: agent.timout_s: unknown key 'timout_s' (did you mean 'timeout_s'?)"):
        assert expected in text, expected
    assert loaded.recipe is not None and [t.use for t in loaded.recipe.tools][0] == "notes"
    assert loaded.recipe.agent.max_turns == 20  # the bad value dropped: its default stands in
    assert loaded.has_problem(("host", "base_url")) and not loaded.has_problem(("tasks",))
    with pytest.raises(UserErrors) as info:  # without collect, the same problems are raised together
        load_recipe(recipe)
    assert info.value.problems == loaded.problems
