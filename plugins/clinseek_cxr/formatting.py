"""Plain-text observations for the cxr tools and the `clinseek cxr classify` command (compact, bounded)."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # numpy is only a type here: importing the toolset must stay cheap
    import numpy as np

# View positions a frontal classifier can read, best first (MIMIC-CXR ViewPosition values).
FRONTAL_ORDER = {"PA": 0, "AP": 1, "AP AXIAL": 2, "PA LLD": 3, "AP LLD": 3, "AP RLD": 3, "PA RLD": 3}
FRONTAL = set(FRONTAL_ORDER)


def _t(when) -> str:
    return when.strftime("%Y-%m-%d %H:%M") if isinstance(when, datetime) else str(when)


def format_studies(studies: Sequence, cutoff, limit: int, named: frozenset[str] = frozenset()) -> str:
    if not studies:
        return f"No chest X-ray studies for this patient up to the prediction time ({_t(cutoff)})."
    shown = list(studies)[-limit:]  # the latest are the most relevant; say what was left out
    lines = [f"{len(studies)} chest X-ray stud{'y' if len(studies) == 1 else 'ies'} for this patient up to the "
             f"prediction time ({_t(cutoff)}), oldest first:", "study_id | time | views | images"]
    if len(shown) < len(studies):
        lines.insert(1, f"[showing the latest {len(shown)} of {len(studies)}; {len(studies) - len(shown)} older "
                        f"studies left out]")
    for s in shown:
        mark = " (named in the task)" if s.study_id in named else ""
        lines.append(f"{s.study_id} | {_t(s.time)} | {', '.join(s.views)} | {len(s.images)}{mark}")
    return "\n".join(lines)


def _model_line(card) -> str:
    return f"model {card.name} v{card.version}"


def label_rows(card, probs: np.ndarray) -> list[tuple[str, float, float, bool]]:
    return [(label, float(p), card.threshold(label), bool(p >= card.threshold(label)))
            for label, p in zip(card.labels, probs)]


def _view_note(card, view: str, study_id: str) -> str:
    if view and view.upper() not in FRONTAL:
        return f" Note: study {study_id} has no frontal image; its {view} view was used, and {card.name} is meant " \
               f"for frontal views."
    return ""


def format_classification(card, study, image: tuple[str, str], probs: np.ndarray) -> str:
    dicom_id, view = image
    rows = label_rows(card, probs)
    out = [f"{_model_line(card)} on study {study.study_id} ({_t(study.time)}), image {dicom_id} "
           f"({view or 'view unknown'}):", "label | probability | threshold | positive"]
    out += [f"{label} | {p:.3f} | {t:.3f} | {'yes' if pos else 'no'}" for label, p, t, pos in rows]
    positives = [label for label, _, _, pos in rows if pos]
    out.append(f"Positive at the model's operating thresholds: {', '.join(positives) or 'none'}."
               + _view_note(card, view, study.study_id))
    return "\n".join(out)


def _status(pos_a: bool, pos_b: bool) -> str:
    return {(False, False): "absent", (False, True): "new", (True, False): "resolved",
            (True, True): "persistent"}[(pos_a, pos_b)]


def format_comparison(card, a, b, stable: float = 0.1) -> str:
    (sa, ia, pa), (sb, ib, pb) = a, b
    days = (sb.time - sa.time).total_seconds() / 86400 if isinstance(sa.time, datetime) else None
    span = f", {abs(days):.1f} days {'later' if days >= 0 else 'earlier'}" if days is not None else ""
    out = [f"{_model_line(card)}: study {sa.study_id} ({_t(sa.time)}) -> study {sb.study_id} ({_t(sb.time)}{span}).",
           f"images: a {ia[0]} ({ia[1] or 'view unknown'}), b {ib[0]} ({ib[1] or 'view unknown'})"
           + _view_note(card, ia[1], sa.study_id) + _view_note(card, ib[1], sb.study_id),
           "label | a | b | change | status"]
    for label, p_a, p_b in zip(card.labels, pa, pb):
        t = card.threshold(label)
        delta = float(p_b - p_a)
        trend = "stable" if abs(delta) < stable else ("increased" if delta > 0 else "decreased")
        out.append(f"{label} | {p_a:.3f} | {p_b:.3f} | {delta:+.3f} {trend} | {_status(p_a >= t, p_b >= t)}")
    out.append(f"status uses the model's thresholds (new: negative in a, positive in b); changes under {stable} "
               f"are called stable.")
    return "\n".join(out)


def format_file_result(card, name: str, probs: np.ndarray, notes: Sequence[str] = ()) -> str:
    rows = label_rows(card, probs)
    out = [f"{_model_line(card)} on {name}" + (f" ({'; '.join(notes)})" if notes else "") + ":",
           "label | probability | threshold | positive"]
    out += [f"{label} | {p:.3f} | {t:.3f} | {'yes' if pos else 'no'}" for label, p, t, pos in rows]
    positives = [label for label, _, _, pos in rows if pos]
    out.append(f"Positive at the model's operating thresholds: {', '.join(positives) or 'none'}.")
    return "\n".join(out)
