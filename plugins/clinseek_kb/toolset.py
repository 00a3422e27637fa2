"""The `kb` toolset: search a local Qdrant medical knowledge base instead of the open web.

Knowledge is not patient data, so the toolset needs no episode state; but a query must never carry patient data
out of the episode, so queries that name the bound patient's identifiers are refused.
"""
from __future__ import annotations

import re
from typing import Any, Optional

from clinseek.errors import ToolError, UserError
from clinseek.toolsets import Episode, Toolset, tool
from clinseek_kb.config import KbConfig


def identifiers_in(query: str, binding: Any) -> list[str]:
    """The bound patient's identifiers (subject, admission, studies, task id) that appear in a query.

    Ids are matched as whole numbers/words; ids shorter than 4 characters are not checked (too many false hits,
    e.g. 'CURB-65').
    """
    if binding is None:
        return []
    ids = [getattr(binding, "subject_id", None), getattr(binding, "hadm_id", None),
           *(getattr(binding, "study_ids", ()) or ()), getattr(binding, "qid", None)]
    found = []
    for value in ids:
        text = str(value).strip() if value is not None else ""
        if len(text) < 4:
            continue
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(text)}(?![A-Za-z0-9])", query, flags=re.I):
            found.append(text)
    return found


class KbToolset(Toolset):
    name = "kb"
    description = ("A local medical knowledge base (ICD-10-CM, CCSR, clinical reference: scores, criteria, "
                   "reference ranges, and the site's own documents). Knowledge only, never patient data.")
    Config = KbConfig
    patient_data = False

    def __init__(self, config: KbConfig, context: Any = None):
        super().__init__(config, context)
        self.store = None
        self.embedder = None
        self.mode = config.mode()
        self.built: list[dict[str, Any]] = []

    # Lifecycle ---------------------------------------------------------------------------------------------
    def open(self) -> None:
        from clinseek_kb import library
        from clinseek_kb.builtin_sources import BUILTIN_COLLECTIONS
        from clinseek_kb.store import Store, server_errors, server_problem

        cfg: KbConfig = self.config
        self.embedder = library.load_embedder(cfg, self.context)
        self.store = Store.from_config(cfg, self.context)
        unreachable = server_errors() if cfg.url else ()
        try:
            if cfg.build_missing:
                builtins = [n for n in cfg.collections if n in BUILTIN_COLLECTIONS]
                # Building is progress, not a problem: use the run's info channel when the context has one.
                warn = getattr(self.context, "info", None) or getattr(self.context, "warn", None)
                for name in builtins:
                    if not library.builtin_is_current(self.store, cfg, name, self.embedder):
                        self.built.append(library.build_builtin(self.store, cfg, name, self.embedder,
                                                                log=warn or (lambda _: None)))
            for name in cfg.collections:
                if not self.store.exists(name):
                    raise UserError(f"knowledge base collection {name!r} does not exist in {self.store.location}",
                                    hint="build or fill it first: clinseek kb build RECIPE, or clinseek kb "
                                         f"ingest RECIPE --collection {name} FILES...")
                self.store.check_embedder(name, self.embedder.identity if self.embedder else None, self.mode)
                if self.mode != "dense":
                    self.store.local_sparse(name)  # build the local index now, not in the first tool call
        except unreachable as exc:
            location = self.store.location
            self.close()
            raise UserError(f"cannot use the knowledge base at {location}: {server_problem(exc)}",
                            hint="start the Qdrant server or correct `url:` (and `api_key:`) in the kb tool's "
                                 "with: block; or use a local knowledge base (`path:`)") from None
        except BaseException:
            self.close()
            raise

    def remote_endpoints(self) -> list:
        """A Qdrant server (`url:`) receives every query, and queries are written from the patient's record."""
        from clinseek.toolsets import Endpoint

        cfg: KbConfig = self.config
        return [Endpoint(cfg.url, True, site_local=cfg.site_local, key="url")] if cfg.url else []

    def preflight(self) -> list:
        """For `clinseek validate`: a local `path` that open() would not create exists, and the embedder's model
        is found locally. Nothing is built or downloaded."""
        from clinseek.toolsets import missing_path
        from clinseek_kb.builtin_sources import BUILTIN_COLLECTIONS

        cfg: KbConfig = self.config
        problems = []
        own = [n for n in cfg.collections if n not in BUILTIN_COLLECTIONS]
        if cfg.path and (own or not cfg.build_missing):
            reason = missing_path(cfg.path, self.context, kind="folder")
            if reason:
                held = ", ".join(own or cfg.collections)
                problems.append(("path", f"knowledge base {reason} (it should hold {held})"))
        if cfg.embedder is not None:
            from pathlib import Path

            from clinseek_kb.embedder import resolve_model_dir

            base = getattr(self.context, "recipe_dir", None)
            try:
                resolve_model_dir(cfg.embedder.model, Path(base) if base else None)
            except UserError as exc:
                problems.append(("embedder.model", exc.message))
        return problems

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def manifest(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"location": self.store.location if self.store else None, "retrieval": self.mode,
                                 "embedder": self.embedder.identity if self.embedder else None,
                                 "built_at_open": self.built}
        if self.store is not None:
            facts["collections"] = {n: {"points": self.store.count(n), **{k: v for k, v in self.store.info(n).items()
                                                                             if k != "embedder"}}
                                    for n in self.config.collections}
        return facts

    # Tools -------------------------------------------------------------------------------------------------
    @tool
    def kb_search(self, episode: Episode, query: str, source: Optional[str] = None,
                  limit: Optional[int] = None) -> str:
        """Search the local medical knowledge base: ICD-10-CM codes, CCSR categories, definitions of clinical
        scores and criteria (SOFA, qSOFA, Sepsis-3, NEWS2, CURB-65, KDIGO AKI, CHA2DS2-VASc, Wells), lab and vital
        reference ranges, and the site's documents. Returns passages with source, title, section and score.
        This is general medical knowledge: NEVER put patient identifiers or patient details in the query.

        Args:
            query: medical words to look for, e.g. "septic shock lactate vasopressor" or "J18.9".
            source: search only this collection (default: all of them).
            limit: at most this many passages.
        """
        from clinseek_kb import library
        from clinseek_kb.render import render_hits

        cfg: KbConfig = self.config
        query = (query or "").strip()
        if not query:
            raise ToolError("kb_search needs a non-empty query of medical words")
        if len(query) > 1000:
            raise ToolError("kb_search query is too long (over 1000 characters): use a few medical keywords")
        if cfg.refuse_patient_identifiers:
            found = identifiers_in(query, getattr(episode, "binding", None))
            if found:
                raise ToolError("kb_search refused: the query contains this patient's identifier(s) "
                                f"({', '.join(found)}). The knowledge base holds general medical knowledge; do not "
                                "put patient identifiers or patient data in knowledge queries. Search with medical "
                                "terms only.")
        if source is not None and source not in cfg.collections:
            raise ToolError(f"kb_search: unknown source {source!r}; choose one of {', '.join(cfg.collections)} "
                            "or leave it out to search all")
        if limit is not None and limit < 1:
            raise ToolError("kb_search: limit must be at least 1")
        limit = min(limit or cfg.limit, cfg.limit)
        if self.store is None:
            raise ToolError("kb_search is unavailable: the knowledge base is not open")
        from clinseek_kb.store import server_errors, server_problem

        try:
            hits = library.search(cfg, query, self.context, collection=source, limit=limit, mode=self.mode,
                                  store=self.store, embedder=self.embedder, check=False)
        except (server_errors() if cfg.url else ()) as exc:
            raise ToolError(f"kb_search: the knowledge base server did not answer ({server_problem(exc)}). "
                            "Try again later, or go on without the knowledge base.") from None
        return render_hits(query, hits, mode=self.mode, collections=[source] if source else cfg.collections,
                           passage_chars=cfg.passage_chars, max_chars=cfg.max_chars)

    @tool
    def kb_code(self, episode: Episode, code: str) -> str:
        """Look up one ICD-10-CM code exactly: title, hierarchy, inclusion terms, excludes, CCSR category and the
        ICD-9-CM equivalents. An ICD-9-CM code is answered with its ICD-10-CM equivalents.

        Args:
            code: an ICD-10-CM code such as "J18.9" or "A419" (dots optional).
        """
        from clinseek_kb import library
        from clinseek_kb.render import render_code

        code = (code or "").strip()
        if not code or len(code) > 10 or not re.fullmatch(r"[A-Za-z0-9.]+", code):
            raise ToolError("kb_code takes one code like J18.9 (letters, digits and a dot); use kb_search for "
                            "words")
        return render_code(code, library.lookup_code(code), self.config.max_chars)
