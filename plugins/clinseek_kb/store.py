"""The Qdrant side: clients (local path or server), collections with their recorded settings, writes, queries.

Each collection has a sparse vector "bm25" (IDF modifier) and, when built with an embedder, a dense vector
"dense" (cosine). Its metadata records the tokenizer, the chunker, avgdl and the embedder identity, so that a
query made with another embedder is refused instead of silently returning nonsense.
"""
from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from clinseek.errors import UserError
from clinseek_kb.chunking import CHUNKER_VERSION, Chunk
from clinseek_kb.sparse import TOKENIZER_VERSION, average_length, document_vector, query_vector

SPARSE = "bm25"
DENSE = "dense"
META_KEY = "clinseek_kb"
FORMAT = 1
_ID_NAMESPACE = uuid.UUID("6f1c3c2e-2f7a-4c55-9d8e-6b0a1f4d2c11")

# qdrant-client local mode locks its folder: one client per path per process, shared and reference-counted.
_LOCAL: dict[Path, list[Any]] = {}
_LOCAL_LOCK = threading.Lock()


def client_kwargs(url: str | None, api_key: Any = None, path: Path | None = None) -> dict[str, Any]:
    """Arguments for QdrantClient (exposed so tests can check them without a server)."""
    if url:
        kwargs: dict[str, Any] = {"url": url, "timeout": 30}
        if api_key is not None:
            secret = api_key.get_secret_value() if hasattr(api_key, "get_secret_value") else str(api_key)
            kwargs["api_key"] = secret
        return kwargs
    if path is None:
        raise UserError("a local knowledge base needs a path")
    return {"path": str(path)}


def describe_location(url: str | None, path: Path | None) -> str:
    """Where the store is, for messages: never includes the API key (nor a password in the URL)."""
    if url:
        from clinseek.redact import redact_text

        return f"Qdrant server {redact_text(url)}"
    return f"local Qdrant at {path}"


def server_errors() -> tuple[type[BaseException], ...]:
    """What a Qdrant server that is down, unreachable, slow or refusing raises through qdrant-client."""
    from qdrant_client.http.exceptions import ApiException

    errors: list[type[BaseException]] = [ApiException, OSError, TimeoutError]
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover - qdrant-client depends on httpx
        pass
    return tuple(errors)


def server_problem(exc: BaseException) -> str:
    """One line on why the server did not answer: the cause's own words, not a traceback."""
    from clinseek.redact import redact_text

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return redact_text(text[:300])


def open_client(url: str | None = None, api_key: Any = None, path: Path | None = None) -> tuple[Any, Any]:
    """(client, lock): local clients and their lock are shared by every Store on the same folder."""
    from qdrant_client import QdrantClient

    if url:
        return QdrantClient(**client_kwargs(url, api_key)), threading.RLock()
    assert path is not None
    with _LOCAL_LOCK:
        entry = _LOCAL.get(path)
        if entry is None:
            path.mkdir(parents=True, exist_ok=True)
            try:
                client = QdrantClient(**client_kwargs(None, None, path), force_disable_check_same_thread=True)
            except RuntimeError as exc:  # another process holds the folder
                raise UserError(f"cannot open the knowledge base: {exc}", where=str(path),
                                hint="local Qdrant allows one process per folder; stop the other one, or use "
                                     "a Qdrant server (url:)") from exc
            entry = _LOCAL[path] = [client, 0, threading.RLock()]
        entry[1] += 1
        return entry[0], entry[2]


def release_client(client: Any, path: Path | None) -> None:
    if path is None:
        client.close()
        return
    with _LOCAL_LOCK:
        entry = _LOCAL.get(path)
        if entry is None or entry[0] is not client:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _LOCAL[path]
            client.close()


@dataclass
class Hit:
    collection: str
    score: float
    payload: dict[str, Any]


class Store:
    """One knowledge base: a Qdrant client plus what each collection recorded at build time."""

    def __init__(self, url: str | None = None, api_key: Any = None, path: Path | None = None):
        self.url, self.path = url, path
        # Local mode is not thread-safe (tools run in worker threads); a server client is, the lock is cheap.
        self.client, self.lock = open_client(url, api_key, path)
        self._sparse_index: dict[str, Any] = {}  # local mode only: collection -> SparseIndex

    @classmethod
    def from_config(cls, config: Any, context: Any = None) -> "Store":
        return cls(url=config.url, api_key=config.api_key, path=config.local_path(context))

    def close(self) -> None:
        release_client(self.client, self.path)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def location(self) -> str:
        return describe_location(self.url, self.path)

    # Collections ---------------------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        with self.lock:
            return self.client.collection_exists(name)

    def info(self, name: str) -> dict[str, Any]:
        """The settings the collection was built with (empty if it was not built by clinseek)."""
        with self.lock:
            config = self.client.get_collection(name).config
        return dict((getattr(config, "metadata", None) or {}).get(META_KEY) or {})

    def count(self, name: str) -> int:
        with self.lock:
            return self.client.count(name, exact=True).count

    def create(self, name: str, *, embedder: dict[str, Any] | None, avgdl: float, chunk_chars: int,
               extra: dict[str, Any] | None = None, replace: bool = False) -> dict[str, Any]:
        from qdrant_client import models

        meta = {"format": FORMAT, "tokenizer": TOKENIZER_VERSION, "avgdl": round(avgdl, 3),
                "chunker": CHUNKER_VERSION, "chunk_chars": chunk_chars, "embedder": embedder, **(extra or {})}
        with self.lock:
            self._sparse_index.pop(name, None)
            if replace and self.client.collection_exists(name):
                self.client.delete_collection(name)
            vectors = {DENSE: models.VectorParams(size=embedder["dim"], distance=models.Distance.COSINE)} \
                if embedder else {}
            self.client.create_collection(
                name, vectors_config=vectors,
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                metadata={META_KEY: meta})
            payload_index = getattr(self.client, "create_payload_index", None)
            if self.url and payload_index:  # local mode ignores payload indexes
                for field in ("source", "codes", "code"):
                    payload_index(name, field, models.PayloadSchemaType.KEYWORD)
        return meta

    def drop(self, name: str) -> None:
        with self.lock:
            self._sparse_index.pop(name, None)
            if self.client.collection_exists(name):
                self.client.delete_collection(name)

    def check_embedder(self, name: str, embedder: dict[str, Any] | None, mode: str) -> dict[str, Any]:
        """Refuse a dense query against a collection built with another embedder (or none)."""
        meta = self.info(name)
        if meta.get("format") != FORMAT:
            raise UserError(f"collection {name!r} in {self.location} was not built by this version of clinseek kb",
                            hint="rebuild it: clinseek kb build RECIPE --rebuild")
        if meta.get("tokenizer") != TOKENIZER_VERSION:
            raise UserError(f"collection {name!r} was built with tokenizer {meta.get('tokenizer')!r}, this "
                            f"clinseek uses {TOKENIZER_VERSION!r}", hint="rebuild it: clinseek kb build RECIPE "
                                                                        "--rebuild")
        built = meta.get("embedder")
        if mode in ("dense", "hybrid") or (embedder and built):
            if not built:
                raise UserError(f"collection {name!r} has no dense vectors (built without an embedder), but "
                                f"the recipe asks for {mode} retrieval with {embedder and embedder['model']!r}",
                                hint="rebuild it with the embedder (clinseek kb build RECIPE --rebuild) or set "
                                     "retrieval: sparse")
            same = embedder and all(built.get(k) == embedder.get(k) for k in ("weights", "dim", "pooling",
                                                                               "normalize"))
            if not same:
                raise UserError(f"collection {name!r} was built with embedder {built.get('model')!r} "
                                f"(weights {built.get('weights')}), the recipe queries it with "
                                f"{(embedder or {}).get('model')!r} (weights {(embedder or {}).get('weights')})",
                                hint="use the embedder it was built with, or rebuild it: clinseek kb build "
                                     "RECIPE --rebuild")
        return meta

    # Writes -------------------------------------------------------------------------------------------------
    @contextmanager
    def bulk(self, name: str) -> Iterator[None]:
        """Local mode commits every point to sqlite; skip the fsync while bulk-loading a rebuildable store."""
        storage = None
        if self.path is not None:
            try:
                storage = self.client._client.collections[name].storage.storage  # sqlite3 connection
                storage.execute("PRAGMA synchronous=OFF")
            except (AttributeError, KeyError):
                storage = None
        try:
            yield
        finally:
            if storage is not None:
                storage.execute("PRAGMA synchronous=FULL")

    def upsert(self, name: str, chunks: list[Chunk], *, avgdl: float, embedder: Any = None,
               batch: int = 256) -> int:
        from qdrant_client import models

        with self.bulk(name):
            for start in range(0, len(chunks), batch):
                part = chunks[start:start + batch]
                dense = embedder.embed([f"{c.section}\n{c.text}" for c in part]) if embedder else None
                points = []
                for i, chunk in enumerate(part):
                    idx, vals = document_vector(f"{chunk.title}\n{chunk.section}\n{chunk.text}", avgdl)
                    vector: dict[str, Any] = {SPARSE: models.SparseVector(indices=idx, values=vals)}
                    if dense is not None:
                        vector[DENSE] = dense[i].tolist()
                    points.append(models.PointStruct(id=chunk_id(chunk), vector=vector, payload=chunk.payload()))
                with self.lock:
                    self._sparse_index.pop(name, None)
                    self.client.upsert(name, points, wait=True)
        return len(chunks)

    def delete_source(self, name: str, source: str) -> None:
        from qdrant_client import models

        selector = models.FilterSelector(filter=models.Filter(must=[
            models.FieldCondition(key="source", match=models.MatchValue(value=source))]))
        with self.lock:
            self._sparse_index.pop(name, None)
            self.client.delete(name, points_selector=selector, wait=True)

    # Reads --------------------------------------------------------------------------------------------------
    def local_sparse(self, name: str) -> Any:
        """The numpy sparse index of a local collection (built on first use, dropped on writes), else None."""
        if self.path is None:
            return None
        with self.lock:
            if name not in self._sparse_index:
                from clinseek_kb.local_sparse import SparseIndex

                self._sparse_index[name] = SparseIndex.from_local_collection(self.client, name, SPARSE)
            return self._sparse_index[name]

    def search(self, name: str, query: str, *, limit: int, mode: str = "sparse", embedder: Any = None,
               query_dense: Any = None, fast_local: bool = True) -> list[Hit]:
        """Best `limit` passages. In local mode sparse scoring uses the numpy index (same scores as Qdrant's);
        hybrid then fuses it with Qdrant's dense results by qdrant-client's own RRF. On a server both run in
        one query-API request: sparse and dense prefetches fused with FusionQuery(RRF)."""
        from qdrant_client import models

        idx, vals = query_vector(query)
        sparse = models.SparseVector(indices=idx, values=vals)
        if mode != "sparse" and query_dense is None:
            query_dense = embedder.embed([query])[0].tolist()
        index = self.local_sparse(name) if fast_local and mode != "dense" else None
        depth = max(limit * 4, 20)
        with self.lock:
            if mode == "sparse":
                if not idx:
                    return []
                if index is not None:
                    return [Hit(name, score, dict(payload)) for _, score, payload in index.search(idx, vals, limit)]
                res = self.client.query_points(name, query=sparse, using=SPARSE, limit=limit, with_payload=True)
            elif mode == "dense":
                res = self.client.query_points(name, query=query_dense, using=DENSE, limit=limit,
                                               with_payload=True)
            elif index is not None:
                from qdrant_client.hybrid.fusion import reciprocal_rank_fusion

                dense_res = self.client.query_points(name, query=query_dense, using=DENSE, limit=depth,
                                                     with_payload=True).points
                sparse_res = [models.ScoredPoint(id=pid, version=0, score=score, payload=payload)
                              for pid, score, payload in index.search(idx, vals, depth)]
                fused = reciprocal_rank_fusion([dense_res, sparse_res], limit=limit)
                return [Hit(name, float(p.score), dict(p.payload or {})) for p in fused]
            else:  # hybrid: reciprocal rank fusion of both candidate lists, done by Qdrant
                prefetch = [models.Prefetch(query=query_dense, using=DENSE, limit=depth)]
                if idx:
                    prefetch.append(models.Prefetch(query=sparse, using=SPARSE, limit=depth))
                res = self.client.query_points(name, prefetch=prefetch,
                                               query=models.FusionQuery(fusion=models.Fusion.RRF), limit=limit,
                                               with_payload=True)
        return [Hit(collection=name, score=float(p.score), payload=dict(p.payload or {})) for p in res.points]

    def scroll_source(self, name: str, source: str) -> list[dict[str, Any]]:
        from qdrant_client import models

        flt = models.Filter(must=[models.FieldCondition(key="source", match=models.MatchValue(value=source))])
        out, offset = [], None
        with self.lock:
            while True:
                points, offset = self.client.scroll(name, scroll_filter=flt, limit=256, offset=offset,
                                                    with_payload=True)
                out.extend(p.payload for p in points)
                if offset is None:
                    return out


def chunk_id(chunk: Chunk) -> str:
    """Stable point id: the same file position always lands on the same point."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{chunk.source}\x00{chunk.position}"))


def avgdl_of(chunks: list[Chunk]) -> float:
    return average_length([f"{c.title}\n{c.section}\n{c.text}" for c in chunks[:5000]])


def mark_complete(store: Store, name: str, meta: dict[str, Any]) -> None:
    """Record that a build finished, so an interrupted one is redone instead of trusted."""
    meta = {**meta, "complete": True}
    with store.lock:
        store.client.update_collection(name, metadata={META_KEY: meta})
