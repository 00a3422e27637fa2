"""Recipes are bounded: hostile or broken YAML ends in one UserError naming the file (and line), never a hang or
a traceback."""
from __future__ import annotations

import pytest

from clinseek.errors import UserError
from clinseek.recipe import load_recipe, load_site
from clinseek.recipe.yamlmarks import MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES

HEAD = "clinseek: 1\nname: x\nhost: {provider: scripted}\n"

LAUGHS = HEAD + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9) if p else ', '.join(['lol'] * 9)}]\n"
    for p, n in zip([""] + list("abcdefgh"), "abcdefghi"))


def write(path, text):
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


def refused(path, **kw) -> str:
    with pytest.raises(UserError) as info:
        load_recipe(path, **kw)
    text = info.value.render()
    assert "Traceback" not in text
    return text


def test_billion_laughs_is_refused(tmp_path):
    # 9 levels of 9 aliases: ~387 million strings if expanded. It must stop at the expansion budget.
    text = refused(write(tmp_path / "laughs.yaml", LAUGHS))
    # `f` alone already expands to 9**6 values: the first top-level key past the budget is named.
    assert "aliases expand to more than 100,000 values under 'f'" in text and "laughs.yaml:9:4" in text


def test_billion_laughs_in_a_site_file_is_refused(tmp_path):
    with pytest.raises(UserError, match="aliases expand"):
        load_site(write(tmp_path / "site.yaml", LAUGHS))


def test_too_many_aliases_are_refused(tmp_path):
    many = HEAD + "base: &b lol\nitems: [" + ", ".join(["*b"] * (MAX_ALIASES + 1)) + "]\n"
    text = refused(write(tmp_path / "many.yaml", many))
    assert f"more than {MAX_ALIASES} YAML aliases" in text and "many.yaml:5:" in text


def test_an_alias_that_contains_itself_is_refused(tmp_path):
    text = refused(write(tmp_path / "loop.yaml", HEAD + "x: &a [1, *a]\n"))
    assert f"nested more than {MAX_DEPTH} deep" in text and "loop.yaml:" in text


@pytest.mark.parametrize("line", ["k: !!python/name:os.system", "k: !!python/object/apply:os.system [ls]",
                                  "k: !!python/object:os.system {a: 1}"])
def test_python_tags_are_refused(tmp_path, line):
    text = refused(write(tmp_path / "py.yaml", HEAD + line + "\n"))
    assert "py.yaml:4:4" in text and "never name Python objects" in text


def test_a_python_tag_on_a_section_is_refused_not_ignored(tmp_path):
    text = refused(write(tmp_path / "py.yaml", "clinseek: 1\nname: x\nhost: !!python/object:os.system "
                                               "{provider: scripted}\n"))
    assert "py.yaml:3:7" in text and "'!!python/object:os.system' is refused" in text


def test_other_tags_are_refused(tmp_path):
    text = refused(write(tmp_path / "tag.yaml", HEAD + "k: !include other.yaml\n"))
    assert "tag.yaml:4:4: unsupported YAML tag '!include'" in text


def test_a_list_as_mapping_key_is_one_message(tmp_path):
    text = refused(write(tmp_path / "key.yaml", HEAD + "? [a, b]\n: 1\n"))
    assert "key.yaml:4:3: a mapping key must be a plain name" in text
    text = refused(write(tmp_path / "key2.yaml", HEAD + "agent: {[a]: 1}\n"))
    assert "key2.yaml:4:9" in text


def test_deep_nesting_is_refused_before_the_parser_recurses(tmp_path):
    text = refused(write(tmp_path / "deep.yaml", "x: " + "[" * 10_000 + "]" * 10_000 + "\n"))
    # The root mapping counts: the 64th `[` is the 65th level.
    assert f"deep.yaml:1:{3 + MAX_DEPTH}" in text and f"nested more than {MAX_DEPTH} deep" in text
    block = "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v: 1\n"
    assert "nested more than" in refused(write(tmp_path / "deep2.yaml", block))


def test_a_nul_byte_through_extends_is_one_message(tmp_path):
    write(tmp_path / "base.yaml", b"clinseek: 1\nname: base\x00\nhost: {provider: scripted}\n")
    text = refused(write(tmp_path / "child.yaml", "extends: base.yaml\nname: c\n"))
    assert "base.yaml:2:11: the file contains a NUL byte" in text
    text = refused(write(tmp_path / "child2.yaml", 'extends: "base\\0.yaml"\nname: c\n'))
    assert "child2.yaml:1:1: `extends` contains a NUL character" in text


def test_oversized_and_non_utf8_files_are_refused(tmp_path):
    big = write(tmp_path / "big.yaml", HEAD + "description: " + "x" * (MAX_FILE_BYTES + 1) + "\n")
    assert "big.yaml: the file is larger than 2 MiB" in refused(big)
    latin = write(tmp_path / "latin.yaml", HEAD.encode() + "description: caf\xe9\n".encode("latin-1"))
    assert "latin.yaml:4:17: the file is not UTF-8 text" in refused(latin)


def test_a_folder_or_bad_extends_path_is_one_message(tmp_path):
    (tmp_path / "sub").mkdir()
    assert "is a folder" in refused(write(tmp_path / "r.yaml", "extends: sub\nname: x\n"))


def test_set_values_have_the_same_bounds(tmp_path):
    recipe = write(tmp_path / "r.yaml", HEAD)
    text = refused(recipe, overrides=["description=!!python/name:os.system"])
    assert text.startswith("--set description=!!python/name:os.system: the YAML tag")
    # Text that is not YAML at all is taken as a string, as before.
    assert load_recipe(recipe, overrides=["description=[oops"]).recipe.description == "[oops"


def test_merge_keys_still_work_and_point_at_the_merged_lines(tmp_path):
    loaded = load_recipe(write(tmp_path / "m.yaml", HEAD + "agent:\n  <<: {max_turns: 5, timeout_s: 9}\n"
                                                          "  timeout_s: 30\n"))
    assert loaded.recipe.agent.max_turns == 5 and loaded.recipe.agent.timeout_s == 30
    assert str(loaded.marks[("agent", "timeout_s")]).endswith("m.yaml:6:3")


@pytest.mark.parametrize("text", [LAUGHS, HEAD + "k: !!python/name:os.system\n", HEAD + "? [a]\n: 1\n",
                                  "x: " + "[" * 10_000 + "]" * 10_000 + "\n", HEAD + "d: \x00\n"])
def test_the_cli_ends_each_in_one_message_with_exit_2(tmp_path, capsys, text):
    from clinseek.cli import main

    recipe = write(tmp_path / "r.yaml", text)
    with pytest.raises(SystemExit) as info:
        main(["validate", str(recipe)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: ") and "r.yaml:" in err
    assert "Traceback" not in err and len([ln for ln in err.splitlines() if not ln.startswith("  hint:")]) == 1
