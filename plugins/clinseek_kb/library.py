"""The knowledge base as library functions; the CLI and the toolset are thin layers over these.

    build_collections(config, context=None, *, names=None, rebuild=False, log=print) -> list[dict]
    ingest(config, collection, paths, context=None, *, log=print) -> dict
    search(config, query, context=None, *, collection=None, limit=None) -> list[Hit]
    lookup_code(code) -> dict | None
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from clinseek.errors import UserError
from clinseek_kb.builtin_sources import BUILTIN_COLLECTIONS, builtin_chunks, code_record, gem_9_to_10
from clinseek_kb.chunking import SUFFIXES, chunk_file
from clinseek_kb.codes import is_icd10cm, normalise_code
from clinseek_kb.config import KbConfig
from clinseek_kb.store import Hit, Store, avgdl_of, mark_complete

Log = Callable[[str], None]
_EMBEDDERS: dict[tuple, Any] = {}
_EMBEDDERS_LOCK = threading.Lock()


def _quiet(_: str) -> None:
    pass


def as_config(config: Any) -> KbConfig:
    if isinstance(config, KbConfig):
        return config
    try:
        return KbConfig.model_validate(config or {})
    except Exception as exc:  # pydantic ValidationError
        raise UserError(f"invalid kb configuration: {exc}") from exc


def load_embedder(config: KbConfig, context: Any = None) -> Any:
    """The configured embedder (shared within the process), or None for sparse-only."""
    if config.embedder is None:
        return None
    from clinseek_kb.embedder import OnnxEmbedder, default_cache_dir

    e = config.embedder
    cache_dir = Path(getattr(context, "cache_dir", None) or default_cache_dir())
    base_dir = getattr(context, "recipe_dir", None)
    key = (e.model, e.max_length, e.batch_size, e.threads, str(cache_dir), str(base_dir))
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = OnnxEmbedder(e.model, cache_dir=cache_dir, base_dir=Path(base_dir) if base_dir else
                                           None, max_length=e.max_length, batch_size=e.batch_size,
                                           threads=e.threads)
        return _EMBEDDERS[key]


def _builtin_options(config: KbConfig, name: str) -> dict[str, Any]:
    from clinseek_kb.builtin_sources import source_version

    options: dict[str, Any] = {"chunk_chars": config.chunk_chars, "source": source_version(name)}
    if name == "icd10cm":
        options["icd10cm_chapters"] = sorted(config.icd10cm_chapters, key=lambda c: int(c)) \
            if config.icd10cm_chapters else None
    return options


def builtin_is_current(store: Store, config: KbConfig, name: str, embedder: Any) -> bool:
    """True when a built-in collection exists, finished building, and matches the config and code."""
    if not store.exists(name):
        return False
    meta = store.info(name)
    wanted = embedder.identity if embedder else None
    from clinseek_kb.sparse import TOKENIZER_VERSION

    return (meta.get("complete") is True and meta.get("builtin") == name
            and meta.get("options") == _builtin_options(config, name) and meta.get("embedder") == wanted
            and meta.get("tokenizer") == TOKENIZER_VERSION)


def build_builtin(store: Store, config: KbConfig, name: str, embedder: Any, log: Log = _quiet) -> dict[str, Any]:
    started = time.perf_counter()
    options = _builtin_options(config, name)
    chunks = builtin_chunks(name, icd10cm_chapters=options.get("icd10cm_chapters"),
                            max_chars=config.chunk_chars)
    avgdl = avgdl_of(chunks)
    meta = store.create(name, embedder=embedder.identity if embedder else None, avgdl=avgdl,
                        chunk_chars=config.chunk_chars, extra={"builtin": name, "options": options,
                                                               "complete": False}, replace=True)
    log(f"building {name}: {len(chunks)} chunks into {store.location}")
    store.upsert(name, chunks, avgdl=avgdl, embedder=embedder)
    mark_complete(store, name, meta)
    return {"collection": name, "chunks": len(chunks), "seconds": round(time.perf_counter() - started, 2),
            "built": True}


def ensure_collection(store: Store, config: KbConfig, name: str, embedder: Any) -> dict[str, Any] | None:
    """Create an empty site collection (filled by ingest) if missing."""
    if store.exists(name):
        return None
    store.create(name, embedder=embedder.identity if embedder else None, avgdl=150.0,
                 chunk_chars=config.chunk_chars, extra={"builtin": None, "complete": True})
    return {"collection": name, "chunks": 0, "built": True, "seconds": 0.0}


def build_collections(config: Any, context: Any = None, *, names: Iterable[str] | None = None,
                      rebuild: bool = False, log: Log = _quiet, store: Store | None = None) -> list[dict[str, Any]]:
    """Build every collection the config names (built-ins from their sources; others created empty).

    Up-to-date built-ins are kept unless `rebuild`; site collections are never emptied unless `rebuild`.
    """
    config = as_config(config)
    wanted = list(names) if names else list(config.collections)
    unknown = [n for n in wanted if n not in config.collections]
    if unknown:
        raise UserError(f"collection(s) {', '.join(unknown)} are not in this kb config's collections",
                        hint=f"configured: {', '.join(config.collections)}")
    embedder = load_embedder(config, context)
    own = store is None
    store = store or Store.from_config(config, context)
    report = []
    try:
        for name in wanted:
            if name in BUILTIN_COLLECTIONS:
                if not rebuild and builtin_is_current(store, config, name, embedder):
                    report.append({"collection": name, "chunks": store.count(name), "built": False,
                                   "seconds": 0.0})
                    continue
                report.append(build_builtin(store, config, name, embedder, log))
            else:
                if rebuild:
                    store.drop(name)
                made = ensure_collection(store, config, name, embedder)
                report.append(made or {"collection": name, "chunks": store.count(name), "built": False,
                                       "seconds": 0.0})
    finally:
        if own:
            store.close()
    return report


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES))
        elif p.exists():
            files.append(p)
        else:
            raise UserError("no such file or folder", where=str(p))
    if not files:
        raise UserError("nothing to ingest: no .md, .txt, .html or .jsonl files found")
    return files


def ingest(config: Any, collection: str, paths: Iterable[str | Path], context: Any = None, *,
           log: Log = _quiet, store: Store | None = None) -> dict[str, Any]:
    """Add documents to a collection. A file's chunks replace the chunks it had before (keyed by file name)."""
    config = as_config(config)
    if collection in BUILTIN_COLLECTIONS:
        raise UserError(f"{collection!r} is a built-in collection; ingest a site's documents into its own "
                        "collection", hint="e.g. --collection site_protocols, and list it under collections:")
    files = _expand(paths)
    embedder = load_embedder(config, context)
    own = store is None
    store = store or Store.from_config(config, context)
    try:
        ensure_collection(store, config, collection, embedder)
        meta = store.check_embedder(collection, embedder.identity if embedder else None,
                                    "dense" if embedder else "sparse")
        if meta.get("chunk_chars") and meta["chunk_chars"] != config.chunk_chars:
            log(f"note: {collection} was built with chunk_chars={meta['chunk_chars']}; keeping that")
        chunk_chars = int(meta.get("chunk_chars") or config.chunk_chars)
        total, per_file = 0, {}
        for f in files:
            chunks = chunk_file(f, source=f.name, max_chars=chunk_chars)
            store.delete_source(collection, f.name)
            store.upsert(collection, chunks, avgdl=float(meta.get("avgdl") or 150.0), embedder=embedder)
            per_file[f.name] = len(chunks)
            total += len(chunks)
            log(f"{f.name}: {len(chunks)} chunks")
        return {"collection": collection, "files": per_file, "chunks": total, "total": store.count(collection)}
    finally:
        if own:
            store.close()


def search(config: Any, query: str, context: Any = None, *, collection: str | None = None,
           limit: int | None = None, mode: str | None = None, store: Store | None = None,
           embedder: Any = None, check: bool = True) -> list[Hit]:
    """What the agent would get: hits across the configured collections (or one), best first.

    Several collections are merged by reciprocal rank (their raw scores are not comparable). `check=False`
    skips the per-call collection checks (the toolset made them once in open()).
    """
    config = as_config(config)
    names = [collection] if collection else list(config.collections)
    bad = [n for n in names if n not in config.collections]
    if bad:
        raise UserError(f"unknown collection {bad[0]!r}", hint=f"configured: {', '.join(config.collections)}")
    mode = mode or config.mode()
    limit = limit or config.limit
    embedder = embedder if embedder is not None else (load_embedder(config, context) if mode != "sparse" else None)
    own = store is None
    store = store or Store.from_config(config, context)
    try:
        dense = embedder.embed([query])[0].tolist() if embedder is not None and mode != "sparse" else None
        per_collection = []
        for name in names:
            if not check:
                per_collection.append(store.search(name, query, limit=limit, mode=mode, query_dense=dense))
                continue
            if not store.exists(name):
                raise UserError(f"collection {name!r} does not exist in {store.location}",
                                hint="build it: clinseek kb build RECIPE")
            store.check_embedder(name, embedder.identity if embedder else None, mode)
            per_collection.append(store.search(name, query, limit=limit, mode=mode, query_dense=dense))
        return merge_ranked(per_collection, limit, query)
    finally:
        if own:
            store.close()


def merge_ranked(lists: list[list[Hit]], limit: int, query: str = "", k: int = 60) -> list[Hit]:
    """Merge per-collection rankings. Raw scores are not comparable across collections (each has its own IDF),
    so hits are ordered by how many query terms they contain, then by reciprocal rank within their collection."""
    if len(lists) == 1:
        return lists[0][:limit]
    from clinseek_kb.sparse import tokenize

    terms = set(tokenize(query))
    fused: list[tuple[float, float, Hit]] = []
    for hits in lists:
        for rank, hit in enumerate(hits):
            p = hit.payload
            have = set(tokenize(f"{p.get('title', '')} {p.get('section', '')} {p.get('text', '')}")) if terms \
                else set()
            coverage = len(terms & have) / len(terms) if terms else 0.0
            fused.append((coverage, 1.0 / (k + rank + 1), hit))
    fused.sort(key=lambda t: (-t[0], -t[1]))
    return [h for _, _, h in fused[:limit]]


def lookup_code(code: str) -> dict[str, Any] | None:
    """Exact look-up of an ICD-10-CM code (dotted or not). An ICD-9-CM code is mapped through the GEMs."""
    raw = code.strip().upper()
    if is_icd10cm(raw):
        return code_record(normalise_code(raw))
    undotted = raw.replace(".", "")
    targets = gem_9_to_10().get(undotted)
    if targets:
        from clinseek_kb.builtin_sources import icd9_descriptions, icd9_dotted

        return {"icd9": icd9_dotted(undotted), "icd9_title": icd9_descriptions().get(undotted, ""),
                "icd10cm": [normalise_code(t) for t in targets]}
    return None
