"""Sparse BM25-style vectors that need no model: our tokenizer, hashed into Qdrant sparse indices.

Choices (documented in docs/kb.md):
- Tokens: lowercase words split on non-alphanumerics, English stop words dropped, a light plural stemmer.
  ICD-10-CM codes are kept whole ("J18.9" -> "icd:j189") and also add their 3-character category ("icd:j18"),
  so a query for the category finds its subcodes.
- Indices: crc32 of the token (31 bits). Hashing needs no stored vocabulary, so a site can ingest new documents
  into an existing collection and old vectors stay valid; collisions are rare (~1e-4 per pair of terms in a
  20k-term vocabulary) and only ever merge two terms.
- Document values: the BM25 term-frequency part, tf*(k1+1) / (tf + k1*(1-b+b*len/avgdl)). The IDF part is left to
  Qdrant (`modifier=IDF` on the collection's sparse vector), which keeps it exact as the collection grows.
- Query values: 1.0 per distinct term, so the dot product is sum(IDF * tf-part) = BM25.
"""
from __future__ import annotations

import re
import zlib
from collections import Counter

TOKENIZER_VERSION = "kb-bm25-v1"
K1 = 1.2
B = 0.75

# ICD-10-CM shape: letter, digit, alphanumeric, then an optional dot and up to four characters.
ICD10_RE = re.compile(r"\b([A-TV-Z][0-9][0-9AB])(?:\.?([0-9A-TV-Z]{1,4}))?\b")
_WORD_RE = re.compile(r"[a-z0-9]+")
_STOP = frozenset("""a an and are as at be but by for from has have in into is it its of on or not no that the
their then there these this to was were which with without other than""".split())


def stem(word: str) -> str:
    """A light plural/participle stemmer: enough to match 'infections' with 'infection'."""
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith(("ss", "us", "is", "os")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Terms of a text, in order, with repeats (document) - use set() for a query."""
    tokens: list[str] = []
    for m in ICD10_RE.finditer(text):
        category, rest = m.group(1), m.group(2) or ""
        tokens.append("icd:" + (category + rest).lower())
        if rest:
            tokens.append("icd:" + category.lower())
    text = ICD10_RE.sub(" ", text)  # a code is one term, not its letters and digits again
    for word in _WORD_RE.findall(text.lower()):
        if word in _STOP:
            continue
        tokens.append(stem(word))
    return tokens


def term_index(term: str) -> int:
    return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF


def document_vector(text: str, avgdl: float) -> tuple[list[int], list[float]]:
    """BM25 term-frequency weights of a document, keyed by hashed term index."""
    tokens = tokenize(text)
    counts: Counter[int] = Counter(term_index(t) for t in tokens)
    norm = K1 * (1 - B + B * len(tokens) / max(avgdl, 1.0))
    indices = sorted(counts)
    values = [counts[i] * (K1 + 1) / (counts[i] + norm) for i in indices]
    return indices, values


def query_vector(text: str) -> tuple[list[int], list[float]]:
    indices = sorted({term_index(t) for t in tokenize(text)})
    return indices, [1.0] * len(indices)


def average_length(texts: list[str]) -> float:
    if not texts:
        return 100.0
    return sum(len(tokenize(t)) for t in texts) / len(texts)
