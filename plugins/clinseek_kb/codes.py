"""ICD-10-CM codes mentioned in a text, checked against the code set so that words like 'B12' don't count."""
from __future__ import annotations

from functools import lru_cache

from clinseek_kb.sparse import ICD10_RE


@lru_cache(maxsize=1)
def _valid_codes() -> frozenset[str]:
    import simple_icd_10_cm as cm

    return frozenset(c for c in cm.get_all_codes(with_dots=True) if not cm.is_chapter_or_block(c))


def normalise_code(code: str) -> str:
    """'j189' / 'J18.9' / ' j18.9 ' -> 'J18.9' (the dotted form simple-icd-10-cm uses)."""
    c = code.strip().upper().replace(".", "")
    return c if len(c) <= 3 else c[:3] + "." + c[3:]


def is_icd10cm(code: str) -> bool:
    return normalise_code(code) in _valid_codes()


def codes_in(text: str) -> list[str]:
    """Valid ICD-10-CM codes found in text, dotted, in first-seen order."""
    seen: dict[str, None] = {}
    for m in ICD10_RE.finditer(text):
        code = normalise_code(m.group(0))
        if code in _valid_codes():
            seen.setdefault(code, None)
    return list(seen)
