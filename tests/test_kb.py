"""The kb toolset: tokenizer, chunking, ingest, sparse search, built-in collections, tools and their guards."""
from __future__ import annotations

import threading
from datetime import datetime
from types import SimpleNamespace

import pytest

from clinseek.errors import ToolError, UserError
from clinseek.toolsets import TOOL_NAME_RE, Binding, Episode, validate_arguments
from clinseek_kb import library
from clinseek_kb.chunking import chunk_file, chunk_text, split_by_size
from clinseek_kb.codes import codes_in
from clinseek_kb.config import KbConfig
from clinseek_kb.sparse import tokenize
from clinseek_kb.store import Store, client_kwargs, describe_location
from clinseek_kb.toolset import KbToolset, identifiers_in

SEPSIS_DOC = """# Ward protocol

## Sepsis bundle

Give antibiotics within one hour of recognising septic shock. Measure lactate and take blood cultures first.

## Falls

Assess falls risk on admission with the ward's falls tool.
"""


def episode(subject_id=10000032, hadm_id=22595853, study_ids=(50414267,), qid="task-0001"):
    binding = Binding(qid=qid, subject_id=subject_id, hadm_id=hadm_id, prediction_time=datetime(2180, 1, 1),
                      study_ids=tuple(study_ids))
    return Episode(binding=binding, task=None)


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("kb")


@pytest.fixture(scope="module")
def context(kb_dir):
    warnings: list[str] = []
    return SimpleNamespace(recipe_dir=kb_dir, cache_dir=kb_dir / "cache", warn=warnings.append, warnings=warnings)


@pytest.fixture(scope="module")
def toolset(context):
    # Chapter 10 (respiratory) keeps the ICD-10-CM build small; the full build is measured in bench/.
    ts = KbToolset(KbConfig(icd10cm_chapters=[10]), context)
    ts.open()
    yield ts
    ts.close()


# Tokenizer and codes ---------------------------------------------------------------------------------------------
def test_tokenizer_keeps_icd_codes_whole_and_adds_their_category():
    tokens = tokenize("Sepsis A41.9, pneumonia J189; infections")
    assert "icd:a419" in tokens and "icd:a41" in tokens
    assert "icd:j189" in tokens and "icd:j18" in tokens
    assert "infection" in tokens  # light plural stemming
    assert "9" not in tokens and "a41" not in tokens  # a code is not re-split into its letters and digits


def test_tokenizer_drops_stop_words_and_lowercases():
    assert tokenize("The Lactate of the patient") == ["lactate", "patient"]


def test_codes_in_keeps_only_valid_icd10cm_codes():
    assert codes_in("vitamin B12 and J18.9, A419, Z99.99 and N17.9") == ["J18.9", "A41.9", "N17.9"]


# Chunking ----------------------------------------------------------------------------------------------------------
def test_markdown_chunks_follow_headings_and_carry_payload():
    chunks = chunk_text(SEPSIS_DOC + "\nSepsis is coded A41.9.\n", source="ward.md")
    sections = [c.section for c in chunks]
    assert sections == ["Sepsis bundle", "Falls"]
    assert all(c.title == "Ward protocol" for c in chunks)
    assert chunks[1].codes == ["A41.9"] and chunks[0].codes == []
    assert [c.position for c in chunks] == [0, 1]
    assert set(chunks[0].payload()) >= {"source", "title", "section", "text", "codes"}


def test_nested_headings_make_a_section_path():
    chunks = chunk_text("# T\n## Renal\n### KDIGO\ntext here\n", source="x.md")
    assert chunks[0].section == "Renal > KDIGO"


def test_long_sections_are_split_by_size_at_boundaries():
    para = "Sentence about creatinine and urine output. " * 40
    pieces = split_by_size(f"{para}\n\n{para}", 300)
    assert len(pieces) > 4
    assert all(len(p) <= 300 for p in pieces)
    assert all(p.endswith(".") for p in pieces[:-1])  # cut at sentence ends, not mid-word


def test_section_citation_is_kept_on_every_piece():
    body = "Source: Vincent JL, et al. 1996.\n\n" + ("SOFA scores six organ systems. " * 80)
    chunks = chunk_text(f"# Scores\n## SOFA\n{body}", source="s.md", max_chars=400)
    assert len(chunks) > 2
    assert all(c.extra.get("citation") == "Vincent JL, et al. 1996." for c in chunks)


def test_html_keeps_headings_and_drops_scripts(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<html><head><title>Stroke guide</title><script>var leak=1;</script></head><body>"
                    "<h2>Thrombolysis</h2><p>Alteplase window is 4.5 hours.</p><h2>Imaging</h2><p>CT first.</p>"
                    "</body></html>")
    chunks = chunk_file(page)
    assert [c.section for c in chunks] == ["Thrombolysis", "Imaging"]
    assert chunks[0].title == "Stroke guide"
    assert "leak" not in " ".join(c.text for c in chunks)


def test_jsonl_records_and_errors(tmp_path):
    good = tmp_path / "faq.jsonl"
    good.write_text('{"text": "Heparin dosing by weight.", "title": "Anticoagulation", "section": "Heparin", '
                    '"url": "intranet/heparin"}\n\n{"text": "Warfarin and INR targets."}\n')
    chunks = chunk_file(good)
    assert [(c.title, c.section) for c in chunks] == [("Anticoagulation", "Heparin"), ("faq", "faq")]
    assert chunks[0].extra["url"] == "intranet/heparin"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "no text"}\n')
    with pytest.raises(UserError, match="line 1 needs a string field 'text'"):
        chunk_file(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(UserError, match="line 1 is not valid JSON"):
        chunk_file(broken)


def test_unsupported_file_type_is_a_user_error(tmp_path):
    f = tmp_path / "scan.pdf"
    f.write_bytes(b"%PDF")
    with pytest.raises(UserError, match="unsupported file type .pdf"):
        chunk_file(f)


# Config --------------------------------------------------------------------------------------------------------
def test_config_refuses_unknown_keys_and_conflicting_locations():
    with pytest.raises(Exception, match="extra"):
        KbConfig.model_validate({"pathh": "kb"})
    with pytest.raises(Exception, match="either path"):
        KbConfig.model_validate({"path": "kb", "url": "http://qdrant:6333"})
    with pytest.raises(Exception, match="api_key only applies"):
        KbConfig.model_validate({"path": "kb", "api_key": "s3cret"})
    assert KbConfig.model_validate({"embedder": "all-MiniLM-L6-v2"}).embedder.model == "all-MiniLM-L6-v2"
    assert KbConfig().mode() == "sparse"
    assert KbConfig(embedder="x").mode() == "hybrid"


def test_config_without_path_or_context_asks_for_a_path():
    with pytest.raises(UserError, match="needs `path`"):
        KbConfig().local_path(None)


def test_relative_path_is_resolved_against_the_recipe_dir(tmp_path):
    ctx = SimpleNamespace(recipe_dir=tmp_path, cache_dir=tmp_path / "c")
    assert KbConfig(path="site_kb").local_path(ctx) == (tmp_path / "site_kb").resolve()
    assert KbConfig().local_path(ctx) == (tmp_path / "c" / "kb").resolve()


def test_server_mode_client_kwargs_carry_the_key_but_messages_never_show_it():
    cfg = KbConfig.model_validate({"url": "https://qdrant.site.local:6333", "api_key": "s3cret-key"})
    kwargs = client_kwargs(cfg.url, cfg.api_key)
    assert kwargs == {"url": "https://qdrant.site.local:6333", "api_key": "s3cret-key", "timeout": 30}
    assert cfg.local_path(None) is None
    shown = " ".join([describe_location(cfg.url, None), repr(cfg), str(cfg.model_dump()), cfg.model_dump_json()])
    assert "s3cret-key" not in shown


# Ingest and sparse search ---------------------------------------------------------------------------------------
def test_ingest_then_search_finds_the_passage_with_its_payload(tmp_path):
    doc = tmp_path / "ward.md"
    doc.write_text(SEPSIS_DOC)
    cfg = KbConfig(path=str(tmp_path / "kb"), collections=["site"])
    result = library.ingest(cfg, "site", [doc])
    assert result == {"collection": "site", "files": {"ward.md": 2}, "chunks": 2, "total": 2}
    hits = library.search(cfg, "antibiotics septic shock")
    assert hits[0].payload["section"] == "Sepsis bundle"
    assert hits[0].payload["source"] == "ward.md" and hits[0].payload["title"] == "Ward protocol"
    assert hits[0].score > 0
    assert library.search(cfg, "falls risk")[0].payload["section"] == "Falls"


def test_reingesting_a_file_replaces_its_chunks(tmp_path):
    doc = tmp_path / "ward.md"
    doc.write_text(SEPSIS_DOC)
    other = tmp_path / "other.txt"
    other.write_text("Potassium replacement protocol for hypokalaemia.")
    cfg = KbConfig(path=str(tmp_path / "kb"), collections=["site"])
    library.ingest(cfg, "site", [doc, other])
    library.ingest(cfg, "site", [doc])
    with Store.from_config(cfg) as store:
        assert store.count("site") == 3  # not 5
    doc.write_text("# Ward protocol\n\n## Sepsis bundle\n\nOnly one section now.\n")
    library.ingest(cfg, "site", [doc])
    with Store.from_config(cfg) as store:
        assert store.count("site") == 2  # the stale 'Falls' chunk is gone, other.txt stays
        assert [p["section"] for p in store.scroll_source("site", "ward.md")] == ["Sepsis bundle"]
    assert not [h for h in library.search(cfg, "falls risk assessment") if h.payload["source"] == "ward.md"]


def test_ingest_a_folder_and_refuse_builtin_names(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\ntext about dialysis\n")
    (tmp_path / "docs" / "b.txt").write_text("text about insulin")
    (tmp_path / "docs" / "skip.bin").write_bytes(b"\0")
    cfg = KbConfig(path=str(tmp_path / "kb"), collections=["site"])
    assert library.ingest(cfg, "site", [tmp_path / "docs"])["files"] == {"a.md": 1, "b.txt": 1}
    with pytest.raises(UserError, match="built-in collection"):
        library.ingest(cfg, "reference", [tmp_path / "docs"])
    with pytest.raises(UserError, match="no such file"):
        library.ingest(cfg, "site", [tmp_path / "missing.md"])


def test_search_unknown_or_unbuilt_collection_is_a_user_error(tmp_path):
    cfg = KbConfig(path=str(tmp_path / "kb"), collections=["site"])
    with pytest.raises(UserError, match="does not exist"):
        library.search(cfg, "anything")
    with pytest.raises(UserError, match="unknown collection 'other'"):
        library.search(cfg, "anything", collection="other")


# Built-in collections -----------------------------------------------------------------------------------------
def test_open_builds_builtins_once_and_reuses_them(toolset, context):
    built = {b["collection"]: b["chunks"] for b in toolset.built}
    assert set(built) == {"icd10cm", "ccsr", "reference"}
    assert built["ccsr"] > 400 and built["reference"] > 50
    assert 300 < built["icd10cm"] < 1000  # chapter 10 only
    again = library.build_collections(toolset.config, context, store=toolset.store)
    assert [r["built"] for r in again] == [False, False, False]


def test_changed_options_or_an_unfinished_build_trigger_a_rebuild(tmp_path):
    cfg = KbConfig(path=str(tmp_path / "kb"), collections=["icd10cm"], icd10cm_chapters=[22])
    first = library.build_collections(cfg)
    assert first[0]["built"] and first[0]["chunks"] < 20
    assert not library.build_collections(cfg)[0]["built"]
    with Store.from_config(cfg) as store:  # simulate a build killed half way
        meta = store.info("icd10cm")
        store.client.update_collection("icd10cm", metadata={"clinseek_kb": {**meta, "complete": False}})
    assert library.build_collections(cfg)[0]["built"]
    wider = KbConfig(path=str(tmp_path / "kb"), collections=["icd10cm"], icd10cm_chapters=[22, 3])
    report = library.build_collections(wider)
    assert report[0]["built"] and report[0]["chunks"] > first[0]["chunks"]


def test_unknown_icd_chapter_is_a_user_error(tmp_path):
    cfg = KbConfig(path=str(tmp_path / "kb"), collections=["icd10cm"], icd10cm_chapters=[99])
    with pytest.raises(UserError, match="unknown ICD-10-CM chapter"):
        library.build_collections(cfg)


def test_reference_corpus_cites_sources_for_every_score():
    from clinseek_kb.builtin_sources import reference_chunks

    chunks = reference_chunks()
    for score in ("qSOFA", "SOFA", "NEWS2", "CURB-65", "KDIGO", "Sepsis-3", "CHA2DS2-VASc", "Wells"):
        mine = [c for c in chunks if score.lower() in c.section.lower()]
        assert mine, score
        assert all(c.extra.get("citation") for c in mine), score
    labs = [c for c in chunks if c.section == "Creatinine"]
    assert labs and "mg/dL" in labs[0].text and "50912" in labs[0].text


# Tools ------------------------------------------------------------------------------------------------------------
def test_tool_specs_are_valid_and_warn_against_patient_data():
    specs = {s.name: s for s in KbToolset.tool_specs()}
    assert set(specs) == {"kb_search", "kb_code"}
    assert all(TOOL_NAME_RE.match(n) for n in specs)
    assert specs["kb_search"].parameters["required"] == ["query"]
    assert "NEVER put patient identifiers" in specs["kb_search"].description
    assert KbToolset.patient_data is False and KbToolset.name == "kb"
    with pytest.raises(ToolError, match="unknown argument"):
        validate_arguments(specs["kb_search"], {"query": "x", "patient": 1})


@pytest.mark.parametrize("query,section", [
    ("septic shock lactate vasopressor", "Sepsis-3 definitions"),
    ("qSOFA respiratory rate altered mentation", "qSOFA (quick SOFA)"),
    ("KDIGO stage 3 creatinine", "KDIGO acute kidney injury stages"),
    ("CHA2DS2-VASc atrial fibrillation stroke", "CHA2DS2-VASc (stroke risk in atrial fibrillation)"),
    ("NEWS2 early warning score", "NEWS2 (National Early Warning Score 2)"),
])
def test_kb_search_finds_the_reference_passage(toolset, query, section):
    out = toolset.kb_search(episode(), query, source="reference", limit=1)
    assert out.startswith('1 passage(s) for')
    assert f"> {section} |" in out
    assert "cites: " in out


def test_kb_search_across_collections_finds_an_icd_code(toolset):
    out = toolset.kb_search(episode(), "pneumonia due to streptococcus pneumoniae")
    assert "ICD-10-CM J13" in out
    assert "(sparse retrieval)" in out and "icd10cm, ccsr, reference" in out


def test_kb_search_bounds_its_output_and_says_so(context):
    cfg = KbConfig(path=str(context.cache_dir / "kb"), collections=["reference"], build_missing=False,
                   max_chars=600, passage_chars=120, limit=5)
    ts = KbToolset(cfg, context)
    ts.open()
    try:
        out = ts.kb_search(episode(), "sepsis organ dysfunction SOFA")
    finally:
        ts.close()
    assert len(out) <= 600 + 200
    assert "[passage cut:" in out
    assert "more passage(s) omitted" in out


def test_kb_search_limit_never_exceeds_the_configured_limit(toolset):
    out = toolset.kb_search(episode(), "pressure", source="reference", limit=50)
    assert out.startswith(f"{toolset.config.limit} passage(s)")


def test_kb_search_refuses_bad_arguments(toolset):
    with pytest.raises(ToolError, match="unknown source 'web'"):
        toolset.kb_search(episode(), "sepsis", source="web")
    with pytest.raises(ToolError, match="non-empty"):
        toolset.kb_search(episode(), "  ")
    assert "No passages match" in toolset.kb_search(episode(), "zzqxv", source="reference")


@pytest.mark.parametrize("query", ["sepsis in subject 10000032", "hadm 22595853 lactate", "study 50414267",
                                   "task-0001 pneumonia"])
def test_kb_search_refuses_queries_with_the_patients_identifiers(toolset, query):
    with pytest.raises(ToolError, match="do not put patient identifiers"):
        toolset.kb_search(episode(), query)


def test_identifier_filter_ignores_short_ids_and_partial_numbers():
    ep = episode(subject_id=65, hadm_id=None, study_ids=(), qid="q1")
    assert identifiers_in("CURB-65 score", ep.binding) == []
    assert identifiers_in("value 100000321", episode().binding) == []
    assert identifiers_in("subject 10000032", episode().binding) == ["10000032"]


def test_identifier_filter_can_be_switched_off(context):
    cfg = KbConfig(path=str(context.cache_dir / "kb"), collections=["reference"], build_missing=False,
                   refuse_patient_identifiers=False)
    ts = KbToolset(cfg, context)
    ts.open()
    try:
        assert "passage(s)" in ts.kb_search(episode(), "sepsis 10000032")
    finally:
        ts.close()


def test_kb_code_gives_title_hierarchy_ccsr_and_icd9(toolset):
    out = toolset.kb_code(episode(), "j189")
    assert out.startswith("J18.9 Pneumonia, unspecified organism (billable)")
    assert "chapter 10 Diseases of the respiratory system" in out
    assert "CCSR category: RSP002" in out
    assert "486 Pneumonia, organism unspecified" in out
    a419 = toolset.kb_code(episode(), "A41.9")
    assert "Inclusion terms: Septicemia NOS" in a419 and "038.9" in a419


def test_kb_code_handles_categories_icd9_and_unknown_codes(toolset):
    assert "(category: not billable, use a subcode)" in toolset.kb_code(episode(), "J18")
    assert "ICD-10-CM equivalent(s) by the CMS General Equivalence Mappings: J18.9" in toolset.kb_code(episode(),
                                                                                                        "486")
    assert "is not an ICD-10-CM code" in toolset.kb_code(episode(), "X99.99")
    with pytest.raises(ToolError, match="one code"):
        toolset.kb_code(episode(), "pneumonia of the left lung")


def test_tools_are_safe_to_call_from_many_threads(toolset):
    results, errors = [], []

    def work(q):
        try:
            results.append(toolset.kb_search(episode(), q, limit=2))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(q,)) for q in
               ["sepsis", "pneumonia", "creatinine", "lactate", "NEWS2", "asthma", "Wells", "SOFA"] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 16


def test_open_refuses_a_missing_site_collection(context):
    cfg = KbConfig(path=str(context.cache_dir / "kb"), collections=["reference", "site_protocols"])
    ts = KbToolset(cfg, context)
    with pytest.raises(UserError, match="clinseek kb ingest RECIPE --collection site_protocols"):
        ts.open()
    assert ts.store is None  # released on failure, so the folder is not left locked


def test_manifest_records_collections_and_retrieval(toolset):
    facts = toolset.manifest()
    assert facts["retrieval"] == "sparse" and facts["embedder"] is None
    assert facts["collections"]["icd10cm"]["options"]["icd10cm_chapters"] == ["10"]
    assert facts["collections"]["reference"]["points"] > 50


def test_plugin_registers_the_toolset():
    from clinseek.plugins import Registry
    import clinseek_kb.plugin as plugin

    reg = Registry()
    reg.register_module(plugin, name="kb-test")
    reg.collect()
    assert reg.get("toolsets", "kb") is KbToolset


# The local numpy sparse index ------------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["septic shock lactate", "pneumonia unspecified organism", "J18", "J18.9",
                                   "acute bronchitis due to rhinovirus", "creatinine mg/dL reference interval"])
def test_local_sparse_index_gives_qdrants_own_ranking_and_scores(toolset, query):
    for name in ("icd10cm", "ccsr", "reference"):
        fast = toolset.store.search(name, query, limit=10)
        qdrant = toolset.store.search(name, query, limit=10, fast_local=False)
        assert [round(h.score, 3) for h in fast] == [round(h.score, 3) for h in qdrant], (name, query)
        # equal scores may come in either order; the sets of passages at each score must match
        assert sorted((round(h.score, 3), h.payload["text"]) for h in fast) == \
            sorted((round(h.score, 3), h.payload["text"]) for h in qdrant)


def test_local_sparse_index_follows_writes(tmp_path):
    doc = tmp_path / "a.md"
    doc.write_text("# Protocols\n\n## Hyperkalaemia\n\nCalcium gluconate protects the myocardium.\n")
    cfg = KbConfig(path=str(tmp_path / "kb"), collections=["site"])
    with Store.from_config(cfg) as store:
        library.ingest(cfg, "site", [doc], store=store)
        assert store.search("site", "calcium gluconate", limit=3)[0].payload["section"] == "Hyperkalaemia"
        doc.write_text("# Protocols\n\n## Hypoglycaemia\n\nGive glucose 10% intravenously.\n")
        library.ingest(cfg, "site", [doc], store=store)
        assert store.search("site", "calcium gluconate", limit=3) == []
        assert store.search("site", "glucose", limit=3)[0].payload["section"] == "Hypoglycaemia"


def test_builtins_record_their_source_version_and_rebuild_when_it_changes(tmp_path, monkeypatch):
    import clinseek_kb.builtin_sources as bs

    cfg = KbConfig(path=str(tmp_path / "kb"), collections=["reference"])
    assert library.build_collections(cfg)[0]["built"]
    with Store.from_config(cfg) as store:
        assert store.info("reference")["options"]["source"].startswith("corpus ")
    assert not library.build_collections(cfg)[0]["built"]
    monkeypatch.setattr(bs, "BUILTIN_FORMAT", bs.BUILTIN_FORMAT + 1)
    assert library.build_collections(cfg)[0]["built"]


def test_reference_preambles_are_notes_not_passages():
    from clinseek_kb.builtin_sources import reference_chunks

    chunks = reference_chunks()
    assert all(c.section != c.title for c in chunks)
    assert all("not a clinical" in c.extra["note"] for c in chunks if "scores" in c.source)


def test_a_folder_held_by_another_process_is_a_clear_user_error(tmp_path):
    import subprocess
    import sys

    with Store(path=tmp_path / "kb"):
        code = ("from pathlib import Path\nfrom clinseek_kb.store import Store\nfrom clinseek.errors import UserError\n"
                f"try:\n    Store(path=Path({str(tmp_path / 'kb')!r}))\nexcept UserError as e:\n    print(e.render())\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "cannot open the knowledge base" in out and "use a Qdrant server (url:)" in out
