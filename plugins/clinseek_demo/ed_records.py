"""Emergency-department records beyond the admitted visits: ED-only visits (discharged home, left, transferred) and
the ED module's diagnosis, medrecon and pyxis rows for every ED visit.

Everything here draws from its own random streams (40, 41), so every table the cohort had before keeps its rows
for the same seed. ED-only visits never overlap [admittime - 48 h, dischtime] of the patient's admissions and end
before the date of death: the evidence window of every existing task (at most 36 h before admission, see
benchmark.py) stays as it was. A visit ending 39-68 h before an emergency admission's ED arrival is the bounce-back
that makes ED_Reattendance_3day a real question.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from clinseek_demo import catalog, model
from clinseek_demo.events import Block

H = np.timedelta64(3600, "s")
ED_ONLY_STAY_BASE = 36_000_000  # above every admitted visit's stay id (30M + 8 per admission slot)
STAYS_PER_PATIENT = 20

# chief complaint -> (ED diagnosis ICD-10 codes, ED medications dispensed)
COMPLAINTS = {
    "Abd pain": (["R1084", "K529"], ["Ondansetron", "Morphine Sulfate", "Famotidine"]),
    "Chest pain": (["R0789", "R079"], ["Aspirin", "Nitroglycerin SL"]),
    "Headache": (["R51", "G43909"], ["Acetaminophen", "Ketorolac", "Metoclopramide"]),
    "Back pain": (["M545", "M5489"], ["Ibuprofen", "Lidocaine 5% Patch"]),
    "Dizziness": (["R42", "R55"], ["Meclizine", "Sodium Chloride 0.9%"]),
    "Fall": (["W19XXXA", "S0990XA"], ["Acetaminophen"]),
    "Cough": (["J069", "R05"], ["Albuterol 0.083% Neb Soln", "Benzonatate"]),
    "N/V": (["R112", "K5289"], ["Ondansetron", "Sodium Chloride 0.9%"]),
    "Dysuria": (["N390", "R300"], ["Cephalexin", "Phenazopyridine"]),
    "Palpitations": (["R002", "I4891"], ["Metoprolol Tartrate"]),
    "Laceration": (["S61412A", "S0181XA"], ["Lidocaine 1%", "Tetanus-Diphtheria Toxoid"]),
    "Anxiety": (["F419"], ["Lorazepam"]),
}
COMPLAINT_NAMES = tuple(COMPLAINTS)
# admitted visits: the main condition's ED medications
CONDITION_PYXIS = {
    "sepsis": ["Ceftriaxone", "Vancomycin", "Sodium Chloride 0.9%"], "pneumonia": ["Ceftriaxone", "Azithromycin"],
    "heart_failure": ["Furosemide"], "aki": ["Sodium Chloride 0.9%"],
    "copd_exacerbation": ["Albuterol 0.083% Neb Soln", "Ipratropium Bromide Neb", "Methylprednisolone"],
    "gi_bleed": ["Pantoprazole"], "pneumothorax": ["Morphine Sulfate"], "chest_pain": ["Aspirin", "Nitroglycerin SL"],
}
# comorbidity -> home medications (name, ETC code, ETC description) for medication reconciliation
HOME_MEDS = {
    "chf": [("Furosemide 40 mg tablet", "00000325", "Loop Diuretics"),
            ("Metoprolol Succinate ER 50 mg tablet", "00000303", "Beta Blockers Cardio-Selective")],
    "copd": [("Albuterol Sulfate HFA inhaler", "00000421", "Beta-Adrenergic Agents, Inhaled"),
             ("Tiotropium 18 mcg inhalation capsule", "00006063", "Anticholinergics, Inhaled")],
    "ckd": [("Calcitriol 0.25 mcg capsule", "00000545", "Vitamin D Preparations")],
    "diabetes": [("Metformin 500 mg tablet", "00000568", "Biguanides"),
                 ("Insulin Glargine 100 unit/mL", "00000566", "Insulins")],
    "hypertension": [("Lisinopril 10 mg tablet", "00000293", "ACE Inhibitors"),
                     ("Amlodipine 5 mg tablet", "00000304", "Calcium Channel Blockers")],
    "afib": [("Apixaban 5 mg tablet", "00005847", "Factor Xa Inhibitors")],
}
GENERAL_MEDS = [("Atorvastatin 40 mg tablet", "00000393", "HMG-CoA Reductase Inhibitors", 0.35),
                ("Aspirin 81 mg chewable tablet", "00000259", "Platelet Aggregation Inhibitors", 0.25),
                ("Omeprazole 20 mg capsule", "00000594", "Proton Pump Inhibitors", 0.15)]
ED_ONLY_DISPOSITION = (["HOME"] * 44 + ["LEFT WITHOUT BEING SEEN"] * 2 + ["LEFT AGAINST MEDICAL ADVICE"] * 2
                       + ["TRANSFER", "ELOPED"])


def _code(name: str, width: int) -> str:
    """A stable pseudo code (GSN, NDC) for a drug name: the same drug gets the same code in every stay."""
    import zlib

    return str(zlib.crc32(name.encode()) % 10 ** width).zfill(width)


def _blocked(b: Block) -> dict[int, list[tuple]]:
    """Patient row -> (start, end) intervals no ED-only visit may touch: each admission from 48 h before."""
    a = b.adm
    disch = b.ts(np.arange(len(a)), b.end_h)
    out: dict[int, list[tuple]] = {}
    for i in range(len(a)):
        out.setdefault(int(a.pat[i]), []).append((a.admit_at[i] - 48 * H, disch[i] + H))
    return out


def _free(intervals, start, end) -> bool:
    return all(end < s or start > e for s, e in intervals)


def ed_only_visits(b: Block) -> dict[str, pd.DataFrame]:
    """ED visits that end without an admission: edstays (hadm_id NULL), triage and hourly vital signs."""
    rng = model.block_rng(b.seed, b.block, 40)
    p, a = b.pats, b.adm
    blocked = _blocked(b)
    first_admit = {int(k): a.admit_at[a.pat == k].min() for k in np.unique(a.pat)}
    stays = []  # (pat, stay_id, intime, outtime, sev, complaint)
    for k in range(len(p.pidx)):
        lo = first_admit.get(k, np.datetime64("2150-01-01T00:00:00", "s")) - np.timedelta64(400 * 86400, "s")
        hi = max((e for _, e in blocked.get(k, [])), default=lo + np.timedelta64(800 * 86400, "s")) \
            + np.timedelta64(400 * 86400, "s")
        if not np.isnat(p.dod[k]):
            hi = min(hi, p.dod[k].astype("datetime64[D]").astype("datetime64[s]") - np.timedelta64(86400, "s"))
        n = min(int(rng.poisson(0.45 + 0.25 * np.clip(p.frailty[k], 0, 3))), 4)
        starts = []
        for _ in range(n):
            if hi <= lo:
                break
            span = int((hi - lo) / np.timedelta64(60, "s"))
            starts.append(lo + np.timedelta64(int(rng.integers(0, span)) * 60, "s"))
        # bounce-back: discharged from the ED 39-68 h before an emergency admission's ED arrival
        for i in np.nonzero((a.pat == k) & ~a.elective)[0]:
            if rng.random() < 0.12:
                starts.append(a.admit_at[i] - np.timedelta64(int((50 + rng.uniform(0, 18)) * 60), "m"))
        j = 0
        queue = sorted(starts)
        while queue and j < STAYS_PER_PATIENT:
            t0 = queue.pop(0)
            los = np.timedelta64(int(np.clip(rng.lognormal(np.log(4.5), 0.5), 1, 20) * 60), "m")
            t1 = t0 + los
            sev = rng.normal(0, 1)
            own = [(s[2] - H, s[3] + H) for s in stays if s[0] == k]  # visits of one patient never overlap
            if not _free(blocked.get(k, []) + own, t0, t1) \
                    or (not np.isnat(p.dod[k]) and t1 >= p.dod[k].astype("datetime64[D]").astype("datetime64[s]")):
                continue
            stays.append((k, ED_ONLY_STAY_BASE + int(p.pidx[k]) * STAYS_PER_PATIENT + j, t0, t1, sev,
                          COMPLAINT_NAMES[int(rng.integers(len(COMPLAINT_NAMES)))]))
            j += 1
            # a sicker-looking visit more often comes back: some within 72 h, some just after
            if rng.random() < 1 / (1 + np.exp(-(-1.6 + 0.8 * sev + 0.3 * p.frailty[k]))):
                queue.append(t1 + np.timedelta64(int(rng.uniform(4, 110) * 60), "m"))
                queue.sort()
    if not stays:
        return {"edstays": pd.DataFrame(), "triage": pd.DataFrame(), "vitalsign": pd.DataFrame()}
    k = np.array([s[0] for s in stays])
    sid = np.array([s[1] for s in stays])
    t_in = np.array([s[2] for s in stays], dtype="datetime64[s]")
    t_out = np.array([s[3] for s in stays], dtype="datetime64[s]")
    sev = np.array([s[4] for s in stays])
    m = len(stays)
    edstays = pd.DataFrame({
        "subject_id": p.subject_id[k], "hadm_id": pd.array([None] * m, dtype="Int64"), "stay_id": sid,
        "intime": t_in, "outtime": t_out, "gender": np.where(p.female[k], "F", "M"), "race": p.race[k],
        "arrival_transport": np.where(rng.random(m) < 0.18 + 0.1 * (sev > 1), "AMBULANCE",
                                      np.where(rng.random(m) < 0.95, "WALK IN", "UNKNOWN")),
        "disposition": np.array(ED_ONLY_DISPOSITION, dtype=object)[rng.integers(0, len(ED_ONLY_DISPOSITION), m)]})

    def vitals(n, s):
        return {"temperature": np.round(rng.normal(98.2, 0.6, n) + 0.5 * np.clip(s, 0, None), 1),
                "heartrate": np.round(rng.normal(84, 12, n) + 7 * s), "resprate": np.round(rng.normal(17, 2, n)),
                "o2sat": np.minimum(np.round(rng.normal(98, 1.2, n) - 0.6 * np.clip(s, 0, None)), 100),
                "sbp": np.round(rng.normal(134, 18, n)), "dbp": np.round(rng.normal(79, 10, n))}

    triage = pd.DataFrame({"subject_id": p.subject_id[k], "stay_id": sid, **vitals(m, sev),
                           "pain": rng.integers(0, 11, m).astype(str),
                           "acuity": np.clip(np.round(3.6 - 0.6 * sev + rng.normal(0, 0.5, m)), 2, 5),
                           "chiefcomplaint": [s[5] for s in stays]})
    n = np.maximum(((t_out - t_in) / H).astype(int), 1)
    vi = np.repeat(np.arange(m), n)
    step = np.arange(len(vi)) - np.repeat(np.cumsum(n) - n, n)
    vt = t_in[vi] + ((step + rng.uniform(0.1, 0.9, len(vi))) * 60).astype("int64").astype("timedelta64[m]")
    vitalsign = pd.DataFrame({"subject_id": p.subject_id[k[vi]], "stay_id": sid[vi], "charttime": vt,
                              **vitals(len(vi), sev[vi]), "rhythm": None, "pain": None})
    return {"edstays": edstays, "triage": triage, "vitalsign": vitalsign}


def ed_details(b: Block, edstays: pd.DataFrame, triage: pd.DataFrame, diagnoses_icd: pd.DataFrame,
               titles: dict[str, str]) -> dict[str, pd.DataFrame]:
    """ED diagnosis (coded at departure), medrecon (home medications early in the visit) and pyxis (medications
    dispensed in the ED) for every ED visit in `edstays` (admitted and ED-only)."""
    rng = model.block_rng(b.seed, b.block, 41)
    a, p = b.adm, b.pats
    pat_of_subject = {int(s): i for i, s in enumerate(p.subject_id)}
    row_of_hadm = {int(h): i for i, h in enumerate(a.hadm_id)}
    complaint = dict(zip(triage["stay_id"].astype(int), triage["chiefcomplaint"]))
    codes = (diagnoses_icd[diagnoses_icd["icd_version"] == 10].sort_values(["hadm_id", "seq_num"])
             .groupby("hadm_id")["icd_code"].apply(list).to_dict()) if len(diagnoses_icd) else {}
    dx, mr, px = [], [], []
    for e in edstays.itertuples(index=False):
        s, stay, t_in, t_out = int(e.subject_id), int(e.stay_id), e.intime, e.outtime
        hours = max((t_out - t_in) / pd.Timedelta(hours=1), 0.5)
        admitted = pd.notna(e.hadm_id)
        if admitted:
            i = row_of_hadm[int(e.hadm_id)]
            main = next((c for c, on in zip(catalog.CONDITIONS, a.cond[i]) if on), "chest_pain")
            dx_codes = [c.strip() for c in codes.get(int(e.hadm_id), [])][: int(rng.integers(1, 4))]
            meds = CONDITION_PYXIS.get(main, ["Acetaminophen"])
        else:
            dx_codes, meds = COMPLAINTS.get(complaint.get(stay, ""), (["R69"], ["Acetaminophen"]))
            dx_codes = dx_codes[: int(rng.integers(1, len(dx_codes) + 1))]
        for n, code in enumerate(dx_codes, 1):
            dx.append((s, stay, n, code, 10, titles.get(code, code).upper()))
        k = pat_of_subject[s]
        home = [m for c, on in zip(catalog.COMORBIDITIES, p.comorbid[k]) if on for m in HOME_MEDS[c]]
        home += [(nm, etc, desc) for nm, etc, desc, pr in GENERAL_MEDS if rng.random() < pr]
        if home:
            t_mr = t_in + pd.Timedelta(minutes=int(60 * rng.uniform(0.2, min(2.0, hours * 0.8))))
            for nm, etc, desc in home:
                mr.append((s, stay, t_mr, nm, _code(nm, 6), _code(nm + "ndc", 11), 1, etc, desc))
        picked = [m for m in meds if rng.random() < 0.75] or meds[:1]
        for rn, nm in enumerate(picked, 1):
            t_px = t_in + pd.Timedelta(minutes=int(60 * rng.uniform(0.3, max(hours - 0.1, 0.4))))
            px.append((s, stay, t_px, rn, nm, 1, _code(nm, 6)))
    cols = lambda t: [c for c, _ in catalog.table_columns(t)]  # noqa: E731
    return {"diagnosis": pd.DataFrame(dx, columns=cols("diagnosis")),
            "medrecon": pd.DataFrame(mr, columns=cols("medrecon")),
            "pyxis": pd.DataFrame(px, columns=cols("pyxis"))}
