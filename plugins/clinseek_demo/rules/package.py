"""Curated input: the evidence package parsed into the same observation tables as the tools' replies."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clinseek_demo.rules.observations import num, Observation


# Curated input: the evidence package parsed into the observation tables the ehr_sql path reads ------------------

PACKAGE_HEAD = re.compile(r"^Events in the [\d.]+ h before (\d{4}-\d{2}-\d{2} \d{2}:\d{2})")
_EVENT_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) ([A-Za-z0-9_]+): ?(.*)$")
# d_items / d_labitems labels of the item ids above (the curator shows the label in place of the id)
VITAL_LABELS = {"heart rate": 220045, "non invasive blood pressure systolic": 220179,
                "arterial blood pressure systolic": 220050, "respiratory rate": 220210,
                "o2 saturation pulseoxymetry": 220277, "temperature celsius": 223762,
                "temperature fahrenheit": 223761}
LAB_LABELS = {"lactate": 50813, "creatinine": 50912, "urea nitrogen": 51006, "white blood cells": 51301,
              "platelet count": 51265, "bilirubin, total": 50885, "sodium": 50983, "hemoglobin": 51222,
              "bicarbonate": 50882, "troponin t": 51003, "ntprobnp": 50963, "c-reactive protein": 50889,
              "po2": 50821, "inr(pt)": 51237, "ph": 50820, "pco2": 50818}
ICU_TABLES = ("chartevents", "icustays", "inputevents", "outputevents", "procedureevents")


@dataclass
class PackageEvent:
    time: datetime
    table: str
    label: str          # the leading field without "=" (an item's label), else ""
    fields: dict[str, str]


def find_package(messages: list[dict[str, Any]]) -> str | None:
    """The curated evidence package in the prompt: from its header line through its last event line."""
    for m in messages:
        if m.get("role") not in ("system", "user"):
            continue
        lines = str(m.get("content") or "").splitlines()
        for i, line in enumerate(lines):
            if PACKAGE_HEAD.match(line.strip()):
                end = i + 1
                while end < len(lines) and (_EVENT_LINE.match(lines[end].strip())
                                            or lines[end].strip() == "(no events in this window)"):
                    end += 1
                return "\n".join(ln.strip() for ln in lines[i:end])
    return None


def parse_package(text: str) -> list[PackageEvent]:
    """Events of a curated package, in the package's order (newest first)."""
    out = []
    for line in text.splitlines()[1:]:
        m = _EVENT_LINE.match(line)
        if not m:
            continue
        try:
            when = datetime.fromisoformat(m.group(1))
        except ValueError:
            continue
        label, fields = "", {}
        for i, part in enumerate(m.group(3).split("; ")):
            key, eq, value = part.partition("=")
            if eq and re.fullmatch(r"[a-z0-9_]+", key):
                fields.setdefault(key, value)
            elif i == 0:
                label = part.strip()
        out.append(PackageEvent(when, m.group(2), label, fields))
    return out


def _item(ev: PackageEvent, labels: dict[str, int]) -> int | None:
    if ev.label and ev.label.lower() in labels:
        return labels[ev.label.lower()]
    item = num(ev.fields.get("itemid"))
    return int(item) if item is not None and int(item) in labels.values() else None


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    esc = lambda v: "" if v is None else str(v).replace("|", "\\|")  # noqa: E731
    return "\n".join(["|".join(columns)] + ["|".join(esc(v) for v in r) for r in rows])


def package_observations(text: str) -> tuple[dict[str, Observation], list[str]]:
    """The package as the observations the ehr_sql path would have had (tables under the same step keys), and a
    list saying which events went into each. No evidence ids: curated mode has none."""
    events = parse_package(text)
    obs: dict[str, Observation] = {}
    used: list[str] = []

    def put(step: str, columns: list[str], rows: list[list[Any]], what: str) -> None:
        if rows:
            obs[step] = Observation(step=step, tool="curated_input", arguments={}, text=_table(columns, rows),
                                    evidence_id=None, is_error=False)
            used.append(what)

    vitals = [[_item(e, VITAL_LABELS), e.fields.get("valuenum"), e.time] for e in events
              if e.table == "chartevents" and _item(e, VITAL_LABELS)]
    put("vitals", ["itemid", "valuenum", "charttime"], vitals, f"{len(vitals)} charted vital signs")

    labs: dict[int, list[Any]] = {}  # itemid -> [latest, first in the window, time, n]; events come newest first
    for e in events:
        item = _item(e, LAB_LABELS) if e.table == "labevents" else None
        if item is None or num(e.fields.get("valuenum")) is None:
            continue
        v = e.fields["valuenum"]
        if item in labs:
            labs[item][1] = v
            labs[item][3] += 1
        else:
            labs[item] = [v, v, e.time, 1]
    put("labs", ["itemid", "valuenum", "first_value", "charttime", "n"],
        [[i, *labs[i]] for i in sorted(labs)], f"{sum(x[3] for x in labs.values())} lab results")

    ed = next((e for e in events if e.table == "vitalsign"), None)
    triage = next((e for e in events if e.table == "triage"), None)
    if ed or triage:
        src = ed or triage
        cols = ["heartrate", "resprate", "o2sat", "sbp", "temperature"]
        row = [src.fields.get(c) for c in cols] + [triage.fields.get("acuity") if triage else None]
        put("ed", cols + ["acuity"], [row], "the latest ED vital signs" + (" and triage acuity" if triage else ""))

    adm = next((e for e in events if e.table == "admissions"), None)
    icu = any(e.table in ICU_TABLES for e in events) or any(
        "intensive care" in e.fields.get("careunit", "").lower() or "icu" in e.fields.get("careunit", "").lower()
        for e in events if e.table == "transfers")
    put("context", ["admission_type", "admittime", "admissions_so_far", "icu_stays_this_admission"],
        [[adm.fields.get("admission_type", "") if adm else "", f"{adm.time:%Y-%m-%d %H:%M:%S}" if adm else "",
          1, int(icu)]] if events else [],
        ("the admission" if adm else "no admission line (admitted before the window)")
        + (", ICU care in the window" if icu else ""))

    drugs = [[e.fields["drug"], e.fields.get("route", ""), e.time] for e in reversed(events)
             if e.table == "prescriptions" and e.fields.get("drug")]
    put("meds", ["drug", "route", "first_start"], drugs,
        f"{len(drugs)} prescriptions ({', '.join(dict.fromkeys(d[0] for d in drugs))})")

    # lab orders: the package shows one day, so a test drawn in it counts as drawn on 1 of 1 hospital days (the
    # seek path's habit rule then keeps it; the routine panels are chosen either way)
    drawn: dict[str, datetime] = {}
    for e in events:
        if e.table == "labevents" and e.label and e.label not in drawn:
            drawn[e.label] = e.time
    put("recent_labs", ["label", "days_drawn", "days_in_hospital", "last_drawn"],
        [[label, 1, 1, f"{t:%Y-%m-%d %H:%M:%S}"] for label, t in sorted(drawn.items())],
        f"{len(drawn)} lab tests drawn in the window")
    return obs, used
