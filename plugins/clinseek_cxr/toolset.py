"""The `cxr` toolset: run a chest X-ray classifier (ONNX + model card) on the bound patient's studies.

The studies an episode can reach are fixed at bind time from the task's patient and prediction time:
`subject_id = binding.subject_id AND study_datetime <= prediction_time` (or `<` with cutoff: strict). Tools take
study ids only, never paths; any other id (another patient's, a later study, a made-up one) is "not found".
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from clinseek.errors import ToolError, UserError
from clinseek.toolsets import Episode, Toolset, ToolsetConfig, tool

from .formatting import FRONTAL_ORDER, format_classification, format_comparison, format_studies


class CxrConfig(ToolsetConfig):
    database: str = Field("demo:", description="DuckDB file with cxr_metadata, or demo:[patients=N,seed=S]")
    model: str = Field("phantom", description="a model card (.yaml, relative to the recipe) or a built-in name")
    providers: Literal["auto", "cpu", "cuda"] = "auto"
    max_batch: int = Field(16, ge=1, le=512, description="most images per inference call")
    batch_wait_ms: float = Field(0.0, ge=0, le=1000, description="how long a batch waits for more images; 0 "
                                 "batches what queued while the model was busy (fastest on CPU, see docs/cxr.md)")
    cutoff: Literal["inclusive", "strict"] = Field("inclusive", description="a study at the prediction time "
                                                                          "counts (inclusive) or not (strict)")
    image_root: str | None = Field(None, description="folder the `path` column is relative to (default: the "
                                                     "database file's folder)")
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads (default: its own)")
    disk_cache: bool = Field(True, description="also cache results under the user cache folder")
    max_studies: int = Field(40, ge=1, le=1000, description="most studies cxr_studies lists (latest first kept)")


@dataclass
class Study:
    study_id: str
    time: datetime
    images: list[tuple[str, str, str]] = field(default_factory=list)  # (dicom_id, view, path)

    @property
    def views(self) -> list[str]:
        return sorted({v or "unknown" for _, v, _ in self.images})

    def pick_image(self) -> tuple[str, str, str]:
        """The image a frontal-view classifier should see: PA, then AP, then the rest; ties by dicom_id."""
        return min(self.images, key=lambda im: (FRONTAL_ORDER.get((im[1] or "").upper(), 9), im[0]))


def resolve_database(database: str, context=None) -> Path:
    """`demo:` / `demo:patients=N,seed=S` -> the cached demo cohort's DuckDB file; else relative to the recipe."""
    from clinseek.plugins import resolve_database as resolve

    resolved = resolve(database, "cxr", context)
    if resolved != database:
        return Path(resolved)
    base = getattr(context, "recipe_dir", None)
    p = Path(database).expanduser()
    return (Path(base) / p) if base is not None and not p.is_absolute() else p


class CxrToolset(Toolset):
    name = "cxr"
    description = "Chest X-ray classifier (ONNX) over the patient's imaging studies up to the prediction time."
    Config = CxrConfig
    patient_data = True

    def __init__(self, config: CxrConfig, context: Any = None):
        super().__init__(config, context)
        self.model = None
        self.batcher = None
        self.cache = None
        self._con = None
        self._db_lock = threading.Lock()
        self.db_path: Path | None = None
        self.image_root: Path | None = None

    # Lifecycle ---------------------------------------------------------------------------------------------
    def open(self) -> None:
        import duckdb

        from .batching import MicroBatcher, ResultCache
        from .card import load_card, resolve_card_path
        from .runtime import CxrModel

        cfg: CxrConfig = self.config
        recipe_dir = getattr(self.context, "recipe_dir", None)
        card = load_card(resolve_card_path(cfg.model, recipe_dir))
        self.model = CxrModel(card, providers=cfg.providers, threads=cfg.threads)
        self.db_path = resolve_database(cfg.database, self.context)
        if not self.db_path.is_file():
            raise UserError(f"database not found: {self.db_path}", where="tools.cxr.with.database")
        # Attached read-only to an in-memory connection (as the ehr toolset does): two toolsets, or a user's own
        # connection, can then open the same file in one process without DuckDB's same-file-config conflict.
        con = duckdb.connect(":memory:")
        try:
            path_literal = "'" + str(self.db_path).replace("'", "''") + "'"
            con.execute(f"ATTACH {path_literal} AS cxr_src (READ_ONLY)")
            con.execute("USE cxr_src")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except duckdb.Error as exc:
            con.close()
            raise UserError(f"cannot open {self.db_path} read-only: {str(exc).splitlines()[0]}",
                            where="tools.cxr.with.database") from None
        self._con = con
        self._check_schema()
        root = Path(cfg.image_root).expanduser() if cfg.image_root else self.db_path.parent
        if cfg.image_root and not root.is_absolute() and recipe_dir is not None:
            root = Path(recipe_dir) / root
        self.image_root = root.resolve()
        cache_dir = getattr(self.context, "cache_dir", None)
        folder = Path(cache_dir) / "cxr" if (cfg.disk_cache and cache_dir) else None
        self.cache = ResultCache(folder=folder)
        self.batcher = MicroBatcher(self.model.predict, max_batch=cfg.max_batch, wait_ms=cfg.batch_wait_ms)

    def _check_schema(self) -> None:
        need = {"subject_id", "study_id", "dicom_id", "ViewPosition", "study_datetime", "path"}
        with self._db_lock:
            rows = self._con.execute("SELECT column_name FROM information_schema.columns "
                                     "WHERE table_catalog = 'cxr_src' AND table_name = 'cxr_metadata'").fetchall()
        have = {r[0] for r in rows}
        if not have:
            raise UserError(f"{self.db_path} has no cxr_metadata table", where="tools.cxr.with.database",
                            hint="use a database built by `clinseek data` or one with MIMIC-CXR metadata")
        missing = sorted(need - have)
        if missing:
            raise UserError(f"cxr_metadata lacks column(s) {', '.join(missing)}", where="tools.cxr.with.database")

    def preflight(self) -> list:
        """For `clinseek validate`: the model card reads and its weights file exists (not hashed here), the
        database file and image_root exist. A `demo:` database is built by open(), not here."""
        from clinseek.toolsets import missing_path

        from .card import load_card, resolve_card_path

        cfg: CxrConfig = self.config
        problems = []
        try:
            card = load_card(resolve_card_path(cfg.model, getattr(self.context, "recipe_dir", None)))
        except UserError as exc:
            problems.append(("model", exc.render()))
        else:
            if not card.weights_path.is_file():
                problems.append(("model", f"the model card's weights file is missing: {card.weights_path}"))
        if not cfg.database.startswith("demo:"):
            reason = missing_path(cfg.database, self.context)
            if reason:
                problems.append(("database", f"database {reason}"))
        if cfg.image_root:
            reason = missing_path(cfg.image_root, self.context, kind="folder")
            if reason:
                problems.append(("image_root", reason))
        return problems

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self._con is not None:
            self._con.close()
            self._con = None

    def bind(self, episode: Episode) -> None:
        b = episode.binding
        cutoff = b.prediction_time   # naive by construction (Task, Binding): the ehr toolset reads the same
        op = "<=" if self.config.cutoff == "inclusive" else "<"
        sql = ("SELECT CAST(study_id AS VARCHAR), study_datetime, CAST(dicom_id AS VARCHAR), "
               "CAST(ViewPosition AS VARCHAR), CAST(path AS VARCHAR) FROM cxr_metadata "
               f"WHERE CAST(subject_id AS VARCHAR) = ? AND study_datetime {op} ? "
               "ORDER BY study_datetime, study_id, dicom_id")
        with self._db_lock:
            rows = self._con.execute(sql, [str(b.subject_id), cutoff]).fetchall()
        studies: dict[str, Study] = {}
        for study_id, when, dicom_id, view, path in rows:
            st = studies.setdefault(study_id, Study(study_id, when))
            st.time = min(st.time, when)
            st.images.append((dicom_id, view or "", path))
        episode.state["studies"] = studies
        episode.state["cutoff"] = cutoff

    def unbind(self, episode: Episode) -> None:
        episode.state.pop("studies", None)

    def manifest(self) -> dict[str, Any]:
        if self.model is None:
            return {}
        sizes = list(self.batcher.batches) if self.batcher else []
        return {**self.model.describe(), "database": str(self.db_path), "max_batch": self.config.max_batch,
                "batch_wait_ms": self.config.batch_wait_ms, "inference_calls": len(sizes),
                "images_inferred": sum(sizes), "cache_hits": self.cache.hits if self.cache else 0}

    # Tools -------------------------------------------------------------------------------------------------
    @tool
    def cxr_studies(self, episode: Episode) -> str:
        """List this patient's chest X-ray studies taken up to the prediction time: study id, time and views.

        Use a study_id from this list with cxr_classify or cxr_compare.
        """
        studies = self._studies(episode)
        named = frozenset(str(s) for s in episode.binding.study_ids)
        return format_studies(list(studies.values()), episode.state.get("cutoff"), self.config.max_studies, named)

    @tool
    def cxr_classify(self, episode: Episode, study_id: int | str) -> str:
        """Run the chest X-ray model on one of this patient's studies: per-label probability and whether it passes
        the model's operating threshold.

        Args:
            study_id: a study id from cxr_studies.
        """
        study = self._study(episode, study_id)
        probs, image = self._classify(study)
        return format_classification(self.model.card, study, image, probs)

    @tool
    def cxr_compare(self, episode: Episode, study_id_a: int | str, study_id_b: int | str) -> str:
        """Compare the model's findings between two of this patient's studies: per-label change from a to b.

        Args:
            study_id_a: the earlier study (from cxr_studies).
            study_id_b: the later study (from cxr_studies).
        """
        a, b = self._study(episode, study_id_a), self._study(episode, study_id_b)
        if a.study_id == b.study_id:
            raise ToolError("cxr_compare needs two different studies; to see one study use cxr_classify")
        pa, ia = self._classify(a)
        pb, ib = self._classify(b)
        return format_comparison(self.model.card, (a, ia, pa), (b, ib, pb))

    # Internals ---------------------------------------------------------------------------------------------
    def _studies(self, episode: Episode) -> dict[str, Study]:
        studies = episode.state.get("studies")
        if studies is None:  # the engine always binds first; a direct call from a test or script may not
            self.bind(episode)
            studies = episode.state["studies"]
        return studies

    def _study(self, episode: Episode, study_id: int | str) -> Study:
        sid = str(study_id).strip()
        if sid[:1] in ("s", "S") and sid[1:].isdigit():  # MIMIC-CXR folder names prefix the id with 's'
            sid = sid[1:]
        studies = self._studies(episode)
        if sid not in studies:
            raise ToolError(f"study {study_id!r} not found: it is not one of this patient's chest X-ray studies up to "
                            f"the prediction time. Call cxr_studies to list the ones you can use.")
        return studies[sid]

    def _classify(self, study: Study):
        from .images import ImageError, load_image_bytes

        dicom_id, view, rel = study.pick_image()
        path = self._image_path(rel)
        try:
            data = path.read_bytes()
        except OSError:
            raise ToolError(f"the image of study {study.study_id} (dicom_id {dicom_id}) is missing from the image "
                            f"store; this study cannot be classified") from None
        key = (self.model.sha256, hashlib.sha256(data).hexdigest())
        probs = self.cache.get(key)
        if probs is None:
            window = self.model.card.preprocess.window
            try:
                img = load_image_bytes(data, name=f"dicom_id {dicom_id}",
                                       window=(window.center, window.width) if window else None)
            except ImageError as exc:
                raise ToolError(f"study {study.study_id}: the image could not be read ({exc.message}); "
                                f"try another study") from None
            x = self.model.prepare(img.pixels)
            try:
                probs = self.batcher.submit(key, x).result(timeout=300)
            except Exception as exc:  # noqa: BLE001 - an inference failure is an observation, not a crash
                raise ToolError(f"the model failed on study {study.study_id}: {type(exc).__name__}: {exc}") \
                    from None
            self.cache.put(key, probs)
        return probs, (dicom_id, view)

    def _image_path(self, rel: str) -> Path:
        """The image's file under the image root; a path that leaves the root (a tampered table) is refused."""
        p = (self.image_root / rel).resolve()
        if not p.is_relative_to(self.image_root):
            raise ToolError("this study's image is stored outside the image folder and cannot be read")
        return p
