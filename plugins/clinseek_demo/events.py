"""Observable rows drawn from the latent model (model.py), one block of patients at a time.

`generate_block` returns {table: pandas.DataFrame} with MIMIC's column names and order. Big event tables (labs,
vitals, outputs) are built with numpy over all rows of the block at once; small per-admission tables (orders,
codes, notes) are built row by row, which stays cheap because they have a few rows per admission.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from clinseek_demo import catalog, model
from clinseek_demo.catalog import COND
from clinseek_demo.cxr_images import FINDINGS  # noqa: F401 - re-exported; the renderer's names are the contract

H = 3600  # seconds per hour
ROWS_PER_PATIENT = 20_000  # id space per patient for row ids (int32 holds 107k patients)


class Block:
    """Latent state of one block plus helpers to turn hours-since-admission into timestamps."""

    def __init__(self, seed: int, block: int, first: int, n: int):
        self.seed, self.block = seed, block
        self.pats = model.simulate_patients(seed, block, first, n)
        self.adm = model.simulate_admissions(seed, block, self.pats)
        self.rng = model.block_rng(seed, block, 2)
        a, m = self.adm, len(self.adm)
        self.cm = self.pats.comorbid[a.pat]
        self.end_h = np.where(a.dies, a.death_h, a.los_h)
        # per (admission, signal): a stable offset and a responsiveness, so one patient's values hang together
        self.offset = {k: self.rng.normal(0, 1, m) for k in catalog.SIGNALS}
        self.resp = {k: self.rng.lognormal(0, 0.3, m) for k in catalog.SIGNALS}
        self.cxr: pd.DataFrame | None = None  # filled by cxr(); used by notes and tasks

    def ts(self, idx, hours) -> np.ndarray:
        """Absolute timestamps (datetime64[s], to the minute) for hours since the admissions' admittime."""
        secs = np.round(np.asarray(hours, dtype=float) * 60).astype("int64") * 60
        return self.adm.admit_at[idx] + secs.astype("timedelta64[s]")

    def has(self, idx, name: str) -> np.ndarray:
        return self.adm.cond[idx, COND[name]]


def _sid(seed: int, *parts) -> str:
    h = hashlib.sha1("-".join(str(p) for p in (seed, *parts)).encode()).hexdigest()
    return "-".join(h[i:i + 8] for i in range(0, 40, 8))


# ---------------------------------------------------------------------------------------------------- signals
def signal(b: Block, key: str, idx: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    spec = catalog.SIGNALS[key]
    sev = 2.0 * np.tanh(b.adm.severity(idx, t) / 2.0)  # physiology saturates: no lactate of 40 at every peak
    drive = np.zeros(len(idx))
    for cname, eff in spec.get("effects", {}).items():
        drive += eff * b.adm.cond[idx, COND[cname]]
    chronic = np.zeros(len(idx))
    for cname, eff in spec.get("chronic", {}).items():
        chronic += eff * b.cm[idx, catalog.COMORBIDITIES.index(cname)]
    sd = spec["sd"]
    # several conditions add up, but physiology has limits: saturate the total shift smoothly at `cap`
    shift = b.resp[key][idx] * drive * sev
    effects = [abs(e) for e in spec.get("effects", {}).values()]
    if effects:
        cap = 2.2 * max(effects)
        shift = cap * np.tanh(shift / cap)
    x = 0.8 * sd * b.offset[key][idx] + chronic + shift + sd * rng.normal(0, 1, len(idx))
    v = np.exp(np.log(spec["mu"]) + x) if spec.get("scale") == "log" else spec["mu"] + x
    item = catalog.lab_items().get(key) or catalog.chart_items().get(key) or {}
    lo, hi = item.get("plausible_extreme") or (None, None)
    return np.clip(v, lo if lo is not None else -np.inf, hi if hi is not None else np.inf)


DECIMALS = {"creatinine": 1, "lactate": 1, "wbc": 1, "hemoglobin": 1, "hematocrit": 1, "potassium": 1,
            "calcium_total": 1, "magnesium": 1, "phosphate": 1, "albumin": 1, "bilirubin_total": 1, "inr": 1,
            "troponin_t": 2, "crp": 1, "ph": 2, "temperature_c": 1}


def _round(key: str, v: np.ndarray) -> np.ndarray:
    return np.round(v, DECIMALS.get(key, 0))


def _fmt(v: np.ndarray, dec: int) -> np.ndarray:
    return np.array([f"{x:.{dec}f}" for x in v], dtype=object)


# ---------------------------------------------------------------------------------------------------- labs
LAB_DELAY_H = {"Arterial blood gas": 0.25, "Lactate": 0.5, "Complete blood count": 1.0, "Troponin T": 1.5,
               "NT-proBNP": 3.0, "C-reactive protein": 3.0}


def lab_draws(b: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(admission index, hours, kind) of blood draws: 0 admission draw, 1 morning draw, 2 ICU extra draw."""
    a, rng = b.adm, b.rng
    m = len(a)
    first = np.where(a.elective, 1.0, -a.ed_h + 0.7)
    hod = (a.admit_at.astype("int64") % 86400) / H
    t1 = (29 - hod) % 24
    t1 = np.where(t1 < first + 3, t1 + 24, t1)
    days = np.ceil(np.maximum(b.end_h - t1, 0) / 24).astype(int) + 1
    idx = np.repeat(np.arange(m), days)
    k = np.arange(len(idx)) - np.repeat(np.cumsum(days) - days, days)
    t = t1[idx] + 24 * k + rng.normal(0, 0.4, len(idx))
    keep = t < b.end_h[idx] - 0.5
    idx, t = idx[keep], t[keep]
    # ICU extra draws every 6 hours with some chance
    xi = np.repeat(idx, 3)
    xt = np.repeat(t, 3) + np.tile([6.0, 12.0, 18.0], len(t)) + rng.normal(0, 0.5, len(xi))
    inicu = a.icu[xi] & (xt >= a.icu_in_h[xi]) & (xt <= a.icu_out_h[xi]) & (xt < b.end_h[xi] - 0.5)
    inicu &= rng.random(len(xi)) < 0.55
    all_idx = np.concatenate([np.arange(m), idx, xi[inicu]])
    all_t = np.concatenate([first, t, xt[inicu]])
    kind = np.concatenate([np.zeros(m, int), np.ones(len(idx), int), np.full(inicu.sum(), 2)])
    return all_idx, all_t, kind


def labs(b: Block) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = model.block_rng(b.seed, b.block, 3)
    a = b.adm
    di, dt, kind = lab_draws(b)
    items = catalog.lab_items()
    frames = []
    draw_no = np.arange(len(di))
    for g_i, (group, gspec) in enumerate(catalog.LAB_GROUPS.items()):
        probs = catalog.LAB_ORDER_PROB[group]
        p = np.full(len(di), 0.0)
        for cname, (p_adm, p_rt) in probs.items():
            pc = np.where(kind == 0, p_adm, p_rt)
            if cname != "base":
                pc = pc * b.adm.cond[di, COND[cname]]
            p = np.maximum(p, pc)
        sev = a.severity(di, dt)
        if group in ("Lactate", "Arterial blood gas"):
            p = np.where(sev > 1.5, np.minimum(p + 0.25, 1.0), p)
        if (kind == 2).any():
            extra = {"Basic metabolic panel": 0.7, "Lactate": 0.6, "Arterial blood gas": 0.45,
                     "Complete blood count": 0.35}.get(group, 0.0)
            if group == "Lactate":
                extra = extra * (b.adm.cond[di, COND["sepsis"]] | (sev > 1.8))
            p = np.where(kind == 2, extra, p)
        sel = rng.random(len(di)) < p
        si, st, sk = di[sel], dt[sel], kind[sel]
        if not len(si):
            continue
        spec_key = draw_no[sel] * 16 + g_i
        delay = LAB_DELAY_H.get(group, 1.5) * rng.lognormal(0, 0.4, len(si))
        values = {}
        for key in gspec["items"]:
            if key == "anion_gap":
                values[key] = values["sodium"] - values["chloride"] - values["bicarbonate"]
            elif key == "bg_specimen_type":
                values[key] = None
            else:
                values[key] = _round(key, signal(b, key, si, st, rng))
        for key in gspec["items"]:
            it = items[key]
            v = values[key]
            if v is None:
                text, num = np.full(len(si), "ART.", dtype=object), np.full(len(si), np.nan)
            else:
                num = v.astype(float)
                text = _fmt(num, DECIMALS.get(key, 0))
            lo, hi = (it.get("normal_adult") or (None, None))
            flag = np.where((lo is not None) & ((num < (lo if lo is not None else -np.inf)) |
                                                (num > (hi if hi is not None else np.inf))), "abnormal", None)
            frames.append(pd.DataFrame({
                "subject_id": a.subject_id[si], "hadm_id": a.hadm_id[si], "specimen_id": 0,
                "itemid": it["itemid"], "order_provider_id": None, "charttime": b.ts(si, st),
                "storetime": b.ts(si, st + delay), "value": text, "valuenum": num, "valueuom": it.get("unit"),
                "ref_range_lower": float(lo) if lo is not None else np.nan,
                "ref_range_upper": float(hi) if hi is not None else np.nan,
                "flag": flag, "priority": np.where(sk == 1, "ROUTINE", "STAT"), "comments": None,
                "_group": group, "_spec": spec_key}))
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values(["subject_id", "charttime", "_spec", "itemid"], kind="stable", ignore_index=True)
    # ids unique per patient range, so they do not depend on how patients are chunked
    base = (df["subject_id"].to_numpy().astype("int64") - 10_000_000) * ROWS_PER_PATIENT
    # number specimens in time order: ids must not hint at draws that happen later
    subj, spec = df["subject_id"].to_numpy(), df["_spec"].to_numpy()
    new = np.r_[True, (spec[1:] != spec[:-1]) | (subj[1:] != subj[:-1])]
    df["specimen_id"] = base + pd.Series(new.astype("int64")).groupby(subj).cumsum().to_numpy()
    df.insert(0, "labevent_id", base + 1 + df.groupby("subject_id").cumcount().to_numpy())
    df.pop("_spec")
    groups = df.pop("_group")
    return df, groups


# ---------------------------------------------------------------------------------------------------- ICU
GCS_TEXT = {220739: {4: "Spontaneously", 3: "To Speech", 2: "To Pain", 1: "No Response"},
            223900: {5: "Oriented", 4: "Confused", 3: "Inappropriate Words", 2: "Incomprehensible sounds",
                     1: "No Response"},
            223901: {6: "Obeys Commands", 5: "Localizes Pain", 4: "Flex-withdraws", 3: "Abnormal Flexion",
                     2: "Abnormal extension", 1: "No response"}}


def icu_hours(b: Block, step: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    a = b.adm
    ii = np.nonzero(a.icu)[0]
    start = np.ceil(a.icu_in_h[ii])
    n = np.maximum(np.floor((a.icu_out_h[ii] - start) / step).astype(int) + 1, 1)
    idx = np.repeat(ii, n)
    k = np.arange(len(idx)) - np.repeat(np.cumsum(n) - n, n)
    t = np.repeat(start, n) + step * k
    keep = t <= np.minimum(a.icu_out_h[idx], b.end_h[idx])
    return idx[keep], t[keep]


def chartevents(b: Block, stay_id: np.ndarray) -> pd.DataFrame:
    rng = model.block_rng(b.seed, b.block, 4)
    a, items = b.adm, catalog.chart_items()
    idx, t = icu_hours(b)
    jitter = rng.uniform(-0.25, 0.1, len(idx))
    t = t + jitter
    cols = {}
    for key in ("heart_rate", "sbp_noninvasive", "dbp_noninvasive", "resp_rate", "spo2"):
        cols[key] = _round(key, signal(b, key, idx, t, rng))
    cols["spo2"] = np.minimum(cols["spo2"], 100)
    cols["mbp_noninvasive"] = np.round((cols["sbp_noninvasive"] + 2 * cols["dbp_noninvasive"]) / 3)
    rows = []

    def add(sel, itemid, num, text, uom):
        rows.append(pd.DataFrame({
            "subject_id": a.subject_id[idx[sel]], "hadm_id": a.hadm_id[idx[sel]], "stay_id": stay_id[idx[sel]],
            "caregiver_id": rng.integers(10000, 99999, sel.sum()), "charttime": b.ts(idx[sel], t[sel]),
            "storetime": b.ts(idx[sel], t[sel] + rng.uniform(0.05, 1.0, sel.sum())), "itemid": itemid,
            "value": text, "valuenum": num, "valueuom": uom, "warning": 0}))

    every = np.ones(len(idx), dtype=bool)
    for key, col in cols.items():
        add(every, items[key]["itemid"], col, _fmt(col, 0), items[key].get("unit"))
    four = (np.round(t).astype(int) % 4) == 0
    temp = _round("temperature_c", signal(b, "temperature_c", idx[four], t[four], rng))
    add(four, items["temperature_c"]["itemid"], temp, _fmt(temp, 1), items["temperature_c"].get("unit"))
    sev = a.severity(idx[four], t[four])
    for itemid, top, slope in ((220739, 4, 1.0), (223900, 5, 1.6), (223901, 6, 1.2)):
        score = np.clip(np.round(top - slope * np.maximum(sev - 1.6, 0) + rng.normal(0, 0.4, four.sum())), 1, top)
        text = np.array([GCS_TEXT[itemid][int(s)] for s in score], dtype=object)
        add(four, itemid, score, text, None)
    fio2_sel = four.copy()
    fio2_sel[four] = sev > 1.3
    fio2 = np.clip(np.round((21 + 25 * (a.severity(idx[fio2_sel], t[fio2_sel]) - 1)) / 5) * 5, 21, 100)
    add(fio2_sel, items["fio2"]["itemid"], fio2, _fmt(fio2, 0), items["fio2"].get("unit"))
    first = np.r_[True, idx[1:] != idx[:-1]]
    w = np.round(b.pats.weight[a.pat[idx[first]]], 1)
    add(first, items["weight_admit_kg"]["itemid"], w, _fmt(w, 1), "kg")
    df = pd.concat(rows, ignore_index=True)
    return df.sort_values(["subject_id", "charttime", "itemid"], kind="stable", ignore_index=True)


def outputevents(b: Block, stay_id: np.ndarray) -> pd.DataFrame:
    rng = model.block_rng(b.seed, b.block, 5)
    a = b.adm
    idx, t = icu_hours(b, step=2.0)
    sev = a.severity(idx, t)
    rate = rng.lognormal(np.log(0.9), 0.35, len(idx)) * np.exp(-0.6 * b.has(idx, "aki") * sev
                                                               - 0.3 * b.has(idx, "sepsis") * sev)
    vol = np.round(2 * b.pats.weight[a.pat[idx]] * rate / 5) * 5
    itemid, _ = catalog.URINE_ITEM
    ct = b.ts(idx, t)
    return pd.DataFrame({"subject_id": a.subject_id[idx], "hadm_id": a.hadm_id[idx], "stay_id": stay_id[idx],
                         "caregiver_id": rng.integers(10000, 99999, len(idx)), "charttime": ct,
                         "storetime": b.ts(idx, t + rng.uniform(0.05, 0.8, len(idx))), "itemid": itemid,
                         "value": vol, "valueuom": "ml"})


def inputevents(b: Block, stay_id: np.ndarray) -> pd.DataFrame:
    rng = model.block_rng(b.seed, b.block, 6)
    a = b.adm
    idx, t = icu_hours(b, step=4.0)
    sev = a.severity(idx, t)
    shock = (b.has(idx, "sepsis") | b.has(idx, "gi_bleed")) & (sev > 1.9)
    rows = []
    for itemid, (name, uom, base, top), thr in ((221906, catalog.VASOPRESSORS[221906], 1.9),
                                                (222315, catalog.VASOPRESSORS[222315], 2.6)):
        sel = shock & (sev > thr)
        i, s, sv = idx[sel], t[sel], sev[sel]
        end = np.minimum(s + 4, b.end_h[i])
        w = np.round(b.pats.weight[a.pat[i]], 1)
        rate = np.round(np.clip(base + (top - base) * (sv - thr) / 2, base, top), 3)
        minutes = (end - s) * 60
        if itemid == 221906:
            amount = np.round(rate * w * minutes / 1000, 3)
            amountuom, rateuom = "mg", "mcg/kg/min"
        else:
            amount = np.round(rate * minutes, 2)
            amountuom, rateuom = "units", "units/min"
        rows.append(pd.DataFrame({
            "subject_id": a.subject_id[i], "hadm_id": a.hadm_id[i], "stay_id": stay_id[i],
            "caregiver_id": rng.integers(10000, 99999, len(i)), "starttime": b.ts(i, s), "endtime": b.ts(i, end),
            "storetime": b.ts(i, s + 0.2), "itemid": itemid, "amount": amount, "amountuom": amountuom,
            "rate": rate, "rateuom": rateuom, "orderid": 0, "linkorderid": 0,
            "ordercategoryname": "01-Drips", "secondaryordercategoryname": None,
            "ordercomponenttypedescription": "Main order parameter", "ordercategorydescription": "Continuous Med",
            "patientweight": w, "totalamount": 250.0, "totalamountuom": "ml", "isopenbag": 0,
            "continueinnextdept": 0, "statusdescription": "ChangeDose/Rate", "originalamount": amount,
            "originalrate": rate}))
    if not rows:
        return pd.DataFrame()
    df = pd.concat(rows, ignore_index=True)
    # orderid unique per row (MIMIC's primary key is orderid + itemid)
    df = df.sort_values(["subject_id", "starttime", "itemid"], kind="stable", ignore_index=True)
    df["orderid"] = (df.groupby("subject_id").cumcount().to_numpy()
                     + (df["subject_id"].to_numpy().astype("int64") - 10_000_000) * ROWS_PER_PATIENT)
    df["linkorderid"] = df["orderid"]
    return df


# ---------------------------------------------------------------------------------------------------- ED
def ed_tables(b: Block, ed_stay: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = model.block_rng(b.seed, b.block, 7)
    a, p = b.adm, b.pats
    ii = np.nonzero(~a.elective)[0]
    intime, outtime = b.ts(ii, -a.ed_h[ii]), b.ts(ii, a.ed_out_h[ii])
    edstays = pd.DataFrame({"subject_id": a.subject_id[ii], "hadm_id": a.hadm_id[ii], "stay_id": ed_stay[ii],
                            "intime": intime, "outtime": outtime,
                            "gender": np.where(p.female[a.pat[ii]], "F", "M"), "race": p.race[a.pat[ii]],
                            "arrival_transport": np.where(a.s0[ii] > 1.0, "AMBULANCE",
                                                          np.where(rng.random(len(ii)) < 0.6, "WALK IN",
                                                                   "AMBULANCE")),
                            "disposition": "ADMITTED"})
    t0 = -a.ed_h[ii]
    vit = {k: signal(b, k, ii, t0, rng) for k in ("temperature_c", "heart_rate", "resp_rate", "spo2",
                                                  "sbp_noninvasive", "dbp_noninvasive")}
    acuity = np.clip(np.round(3.2 - 1.0 * a.s0[ii] + rng.normal(0, 0.5, len(ii))), 1, 5)
    complaint = []
    for i in ii:
        names = [catalog.CHIEF_COMPLAINT[c] for c, on in zip(catalog.CONDITIONS, a.cond[i]) if on]
        complaint.append(names[0] if names else "Transfer")
    triage = pd.DataFrame({"subject_id": a.subject_id[ii], "stay_id": ed_stay[ii],
                           "temperature": np.round(vit["temperature_c"] * 9 / 5 + 32, 1),
                           "heartrate": np.round(vit["heart_rate"]), "resprate": np.round(vit["resp_rate"]),
                           "o2sat": np.minimum(np.round(vit["spo2"]), 100), "sbp": np.round(vit["sbp_noninvasive"]),
                           "dbp": np.round(vit["dbp_noninvasive"]),
                           "pain": rng.integers(0, 11, len(ii)).astype(str), "acuity": acuity,
                           "chiefcomplaint": complaint})
    # ED vital signs about hourly from arrival to departure
    n = np.maximum(np.floor(a.ed_h[ii] + a.ed_out_h[ii]).astype(int), 1)
    vi = np.repeat(ii, n)
    k = np.arange(len(vi)) - np.repeat(np.cumsum(n) - n, n)
    vt = -a.ed_h[vi] + k + rng.uniform(0.1, 0.9, len(vi))
    v = {key: signal(b, key, vi, vt, rng) for key in vit}
    stay_of = dict(zip(ii, ed_stay[ii]))
    vitals = pd.DataFrame({"subject_id": a.subject_id[vi], "stay_id": [stay_of[i] for i in vi],
                           "charttime": b.ts(vi, vt), "temperature": np.round(v["temperature_c"] * 9 / 5 + 32, 1),
                           "heartrate": np.round(v["heart_rate"]), "resprate": np.round(v["resp_rate"]),
                           "o2sat": np.minimum(np.round(v["spo2"]), 100), "sbp": np.round(v["sbp_noninvasive"]),
                           "dbp": np.round(v["dbp_noninvasive"]), "rhythm": None, "pain": None})
    return edstays, triage, vitals
