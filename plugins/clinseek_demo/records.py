"""Per-admission tables: patients, admissions, transfers, ICU stays, services, orders, cultures, codes, CXR studies,
notes and outpatient measurements. A handful of rows per admission, so built in plain Python loops over the block.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from clinseek_demo import catalog, model
from clinseek_demo.catalog import COND
from clinseek_demo.events import FINDINGS, ROWS_PER_PATIENT, Block, _sid
from clinseek_demo.notes import discharge_text, radiology_text

K8 = 8  # id slots per admission for transfers and studies


def _ids(b: Block) -> dict[str, np.ndarray]:
    a = b.adm
    key = (b.pats.pidx[a.pat] * model.MAX_ADMISSIONS + a.slot).astype("int64") * K8
    return {"transfer": 30_000_000 + key, "study": 50_000_000 + key}


def _main(b: Block, i: int) -> str:
    present = [c for c, on in zip(catalog.CONDITIONS, b.adm.cond[i]) if on]
    return present[0] if present else "default"


def core_tables(b: Block) -> dict[str, pd.DataFrame]:
    a, p, rng = b.adm, b.pats, model.block_rng(b.seed, b.block, 10)
    ids = _ids(b)
    m = len(a)
    ed_stay = ids["transfer"] + 0
    icu_stay = ids["transfer"] + 2

    patients = pd.DataFrame({
        "subject_id": p.subject_id, "gender": np.where(p.female, "F", "M"), "anchor_age": p.age,
        "anchor_year": p.anchor_year,
        "anchor_year_group": np.array(catalog.ANCHOR_YEAR_GROUPS, dtype=object)[p.year_group],
        "dod": p.dod.astype("datetime64[D]")})

    disch = b.ts(np.arange(m), b.end_h)
    frail_sev = a.frailty + 0.5 * a.sp + 0.03 * (a.age - 65)
    u = rng.random(m)
    dl = np.where(frail_sev > 1.6, np.where(u < 0.5, "SKILLED NURSING FACILITY", "REHAB"),
                  np.where(frail_sev > 0.6, np.where(u < 0.6, "HOME HEALTH CARE", "HOME"), "HOME"))
    dl = np.where((frail_sev > 2.2) & (u < 0.15), "HOSPICE", dl)
    dl = np.where(a.dies, "DIED", dl)
    ed_in = b.ts(np.arange(m), -a.ed_h)
    ed_out = b.ts(np.arange(m), a.ed_out_h)
    admissions = pd.DataFrame({
        "subject_id": a.subject_id, "hadm_id": a.hadm_id, "admittime": a.admit_at, "dischtime": disch,
        "deathtime": np.where(a.dies, disch, np.datetime64("NaT")),
        "admission_type": np.where(a.elective, "ELECTIVE", np.where(rng.random(m) < 0.85, "EW EMER.", "URGENT")),
        "admit_provider_id": [f"P{x:03d}{chr(65 + y)}{chr(65 + z)}" for x, y, z in
                              zip(rng.integers(0, 999, m), rng.integers(0, 26, m), rng.integers(0, 26, m))],
        "admission_location": np.where(a.elective, "PHYSICIAN REFERRAL", "EMERGENCY ROOM"),
        "discharge_location": dl, "insurance": p.insurance[a.pat], "language": p.language[a.pat],
        "marital_status": p.marital[a.pat], "race": p.race[a.pat],
        "edregtime": np.where(a.elective, np.datetime64("NaT"), ed_in),
        "edouttime": np.where(a.elective, np.datetime64("NaT"), ed_out),
        "hospital_expire_flag": a.dies.astype(int)})

    tr, icu, svc = [], [], []
    for i in range(m):
        s, h, base = int(a.subject_id[i]), int(a.hadm_id[i]), int(ids["transfer"][i])
        main = _main(b, i)
        ward = catalog.WARD_UNITS.get(main, catalog.WARD_UNITS["default"])
        if a.elective[i]:
            ward = "Surgery"
        unit = catalog.ICU_UNITS.get(main, catalog.ICU_UNITS["default"])
        t_adm, t_end = a.admit_at[i], disch[i]
        if not a.elective[i]:
            tr.append((s, h, base, "ED", "Emergency Department", ed_in[i], t_adm))
        if a.icu[i]:
            ti, to = b.ts(i, a.icu_in_h[i]), b.ts(i, min(a.icu_out_h[i], b.end_h[i]))
            tr.append((s, h, base + 1, "admit", ward, t_adm, ti))
            tr.append((s, h, base + 2, "transfer", unit, ti, to))
            if to < t_end:
                tr.append((s, h, base + 3, "transfer", ward, to, t_end))
            icu.append((s, h, base + 2, unit, unit, ti, to, round((to - ti) / np.timedelta64(1, "D"), 4)))
        else:
            tr.append((s, h, base + 1, "admit", ward, t_adm, t_end))
        tr.append((s, h, base + 4, "discharge", None, t_end, None))
        svc.append((s, h, t_adm, None, "SURG" if a.elective[i] else catalog.SERVICE.get(main, "MED")))
    transfers = pd.DataFrame(tr, columns=["subject_id", "hadm_id", "transfer_id", "eventtype", "careunit", "intime",
                                          "outtime"])
    icustays = pd.DataFrame(icu, columns=["subject_id", "hadm_id", "stay_id", "first_careunit", "last_careunit",
                                          "intime", "outtime", "los"])
    services = pd.DataFrame(svc, columns=["subject_id", "hadm_id", "transfertime", "prev_service", "curr_service"])
    return {"patients": patients, "admissions": admissions, "transfers": transfers, "icustays": icustays,
            "services": services, "_ed_stay": ed_stay, "_icu_stay": icu_stay}


def prescriptions(b: Block) -> pd.DataFrame:
    a, rng = b.adm, model.block_rng(b.seed, b.block, 11)
    rows = []
    for i in range(len(a)):
        s, h = int(a.subject_id[i]), int(a.hadm_id[i])
        t0, end = (-a.ed_h[i] + 0.5 if not a.elective[i] else 0.5), b.end_h[i]
        plan = []
        for cname, on in zip(catalog.CONDITIONS, a.cond[i]):
            if on:
                plan += [(d, t0 + d[6] * rng.uniform(0.5, 1.5), rng.uniform(48, 240)) for d in catalog.DRUGS[cname]]
        for d in catalog.BACKGROUND_DRUGS:
            plan.append((d, d[6] * rng.uniform(0.5, 1.5), end))
        for j, cname in enumerate(catalog.COMORBIDITIES):
            if b.cm[i, j] and cname in catalog.COMORBIDITY_DRUGS:
                d = catalog.COMORBIDITY_DRUGS[cname]
                plan.append((d, d[6] * rng.uniform(0.5, 1.5), end))
        if a.cond[i, COND["sepsis"]] and a.tp[i] > 0 and a.icu[i]:  # escalation when a septic patient worsens
            plan.append((("Meropenem", "IV", "1", "g", "VIAL", 3, 0.0, 0.9), a.icu_in_h[i] + 1.0, 240.0))
        for d, start, dur in plan:
            drug, route, dose, unit, form, per_day, _, chance = d
            if rng.random() >= chance or start >= end - 0.5:
                continue
            stop = min(start + dur, end)
            rows.append((s, h, 0, "", 0, None, b.ts(i, start),
                         b.ts(i, stop), "MAIN", drug, None, None, None, f"{dose}{unit}", form, dose, unit, dose,
                         unit, float(per_day), route))
    cols = [c for c, _ in catalog.table_columns("prescriptions")]
    df = pd.DataFrame(rows, columns=cols)
    # ids in time order, so a gap never hints at an order placed later
    df = df.sort_values(["subject_id", "starttime", "drug"], kind="stable", ignore_index=True)
    seq = df.groupby("subject_id").cumcount().to_numpy() + 1
    df["pharmacy_id"] = (df["subject_id"].to_numpy().astype("int64") - 10_000_000) * ROWS_PER_PATIENT + seq
    df["poe_seq"] = seq
    df["poe_id"] = df["subject_id"].astype(str) + "-" + pd.Series(seq).astype(str)
    return df


def microbiology(b: Block) -> pd.DataFrame:
    a, rng = b.adm, model.block_rng(b.seed, b.block, 12)
    rows, counter = [], {}
    for i in range(len(a)):
        s, h = int(a.subject_id[i]), int(a.hadm_id[i])
        sepsis, pna = a.cond[i, COND["sepsis"]], a.cond[i, COND["pneumonia"]]
        t0 = -a.ed_h[i] + 1.0 if not a.elective[i] else 2.0
        specimens = []  # (kind, hours, positive)
        if sepsis or (rng.random() < 0.15):
            specimens += [("blood", t0, sepsis and rng.random() < 0.45), ("blood", t0 + 0.1, False)]
            if sepsis and rng.random() < 0.6:
                specimens.append(("urine", t0 + 0.3, rng.random() < 0.35))
        if pna and rng.random() < 0.6:
            specimens.append(("sputum", t0 + 2.0, rng.random() < 0.5))
        if a.icu[i] and rng.random() < 0.6:
            specimens.append(("mrsa", a.icu_in_h[i] + 1.0, rng.random() < 0.08))
        for kind, t, positive in specimens:
            if t >= b.end_h[i]:
                continue
            spec_itemid, spec_desc, test_itemid, test_name = catalog.MICRO_SPECIMENS[kind]
            n = counter[s] = counter.get(s, 0) + 1
            spec_id = (s - 10_000_000) * ROWS_PER_PATIENT + n
            ct = b.ts(i, t)
            day = ct.astype("datetime64[D]").astype("datetime64[s]")
            if positive:
                pool = catalog.RESP_ORGANISMS if kind == "sputum" else catalog.ORGANISMS
                org_itemid, org_name = pool[int(rng.integers(len(pool)))]
                if kind == "mrsa":
                    org_itemid, org_name = 80293, "POSITIVE FOR METHICILLIN RESISTANT STAPH AUREUS"
                st = b.ts(i, t + rng.uniform(20, 60))
                tested = [] if kind == "mrsa" else [catalog.ANTIBIOTICS[j] for j in
                                                    sorted(rng.choice(len(catalog.ANTIBIOTICS), 4, replace=False))]
                for ab_itemid, ab_name in tested or [(None, None)]:
                    interp = None if ab_itemid is None else ("R" if rng.random() < 0.18 else "S")
                    rows.append([s, h, spec_id, None, day, ct, spec_itemid, spec_desc, 1,
                                 st.astype("datetime64[D]").astype("datetime64[s]"), st, test_itemid, test_name,
                                 org_itemid, org_name, 1 if ab_itemid else None, None, ab_itemid, ab_name,
                                 None if ab_itemid is None else ("<=1" if interp == "S" else ">=32"),
                                 None if ab_itemid is None else ("<=" if interp == "S" else ">="),
                                 None if ab_itemid is None else (1.0 if interp == "S" else 32.0), interp, None])
            else:
                st = b.ts(i, t + (120 if kind == "blood" else rng.uniform(24, 48)))
                rows.append([s, h, spec_id, None, day, ct, spec_itemid, spec_desc, 1,
                             st.astype("datetime64[D]").astype("datetime64[s]"), st, test_itemid, test_name,
                             None, None, None, None, None, None, None, None, None, None,
                             "NO GROWTH." if kind != "mrsa" else "No MRSA isolated."])
    cols = [c for c, _ in catalog.table_columns("microbiologyevents")]
    df = pd.DataFrame(rows, columns=cols[1:])
    df = df.sort_values(["subject_id", "charttime", "micro_specimen_id"], kind="stable", ignore_index=True)
    subj, spec = df["subject_id"].to_numpy(), df["micro_specimen_id"].to_numpy()
    new = np.r_[True, (spec[1:] != spec[:-1]) | (subj[1:] != subj[:-1])] if len(df) else np.array([], bool)
    df["micro_specimen_id"] = ((subj.astype("int64") - 10_000_000) * ROWS_PER_PATIENT
                               + pd.Series(new.astype("int64")).groupby(subj).cumsum().to_numpy())
    df.insert(0, "microevent_id", (df["subject_id"].astype("int64") - 10_000_000) * ROWS_PER_PATIENT
              + df.groupby("subject_id").cumcount())
    return df


def cxr_studies(b: Block) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CXR metadata (one frontal image per study) and the hidden per-image truth, from the latent course."""
    a, rng = b.adm, model.block_rng(b.seed, b.block, 13)
    ids = _ids(b)
    c = COND
    meta, labels = [], []
    for i in range(len(a)):
        s, h = int(a.subject_id[i]), int(a.hadm_id[i])
        cond = a.cond[i]
        chest = cond[[c["pneumonia"], c["heart_failure"], c["copd_exacerbation"], c["pneumothorax"],
                      c["sepsis"]]].any()
        times = []
        if rng.random() < (0.9 if chest else 0.25):
            times.append((-a.ed_h[i] + rng.uniform(0.5, max(a.ed_h[i], 1.0)) if not a.elective[i]
                          else rng.uniform(1, 6), "ED"))
        hod = (a.admit_at[i].astype("int64") % 86400) / 3600
        morning = (29 - hod) % 24
        while morning < b.end_h[i] - 2 and len(times) < K8:
            in_icu = a.icu[i] and a.icu_in_h[i] <= morning <= a.icu_out_h[i]
            if rng.random() < (0.35 if in_icu else (0.12 if chest else 0.02)):
                times.append((morning + rng.uniform(0, 3), "ICU" if in_icu else "WARD"))
            morning += 24
        times = sorted(times)[:K8]
        u = rng.random(len(FINDINGS))  # per-admission propensities keep findings consistent across studies
        tube_h = rng.uniform(2, 12)
        for j, (t, where) in enumerate(times):
            sev = float(a.severity(np.array([i]), np.array([t]))[0])
            hf = cond[c["heart_failure"]] or b.cm[i, catalog.COMORBIDITIES.index("chf")]
            p = {
                "cardiomegaly": 0.8 if hf else 0.04 + 0.04 * (a.age[i] > 75),
                "pleural_effusion": (0.3 + 0.25 * min(sev, 2)) if cond[c["heart_failure"]] else
                (0.22 if cond[c["pneumonia"]] else 0.03),
                "consolidation": 0.92 / (1 + np.exp(-4 * (sev - 0.25))) if cond[c["pneumonia"]] else 0.03,
                "pulmonary_edema": 1 / (1 + np.exp(-3 * (sev - 0.9))) if cond[c["heart_failure"]] else
                (0.08 * min(sev, 2) if cond[c["sepsis"]] else 0.02),
                "pneumothorax": (0.95 if t < tube_h + 36 else 0.15) if cond[c["pneumothorax"]] else 0.003,
            }
            jitter = rng.normal(0, 0.04, len(FINDINGS))
            present = {f for k, f in enumerate(FINDINGS) if u[k] + jitter[k] < p[f]}
            study_id = int(ids["study"][i] + j)
            dicom_id = _sid(b.seed, study_id, 0)
            when = b.ts(i, t)
            date = pd.Timestamp(when)
            ap = where != "WARD" and (where == "ICU" or rng.random() < 0.5)
            meta.append({"dicom_id": dicom_id, "subject_id": s, "study_id": study_id,
                         "PerformedProcedureStepDescription": "CHEST (PORTABLE AP)" if ap else "CHEST (PA AND LAT)",
                         "ViewPosition": "AP" if ap else "PA", "Rows": 256, "Columns": 256,
                         "StudyDate": int(date.strftime("%Y%m%d")),
                         "StudyTime": float(date.strftime("%H%M%S")),
                         "ProcedureCodeSequence_CodeMeaning": "CHEST (PORTABLE AP)" if ap else "CHEST (PA AND LAT)",
                         "ViewCodeSequence_CodeMeaning": "antero-posterior" if ap else "postero-anterior",
                         "PatientOrientationCodeSequence_CodeMeaning": "Recumbent" if where == "ICU" else "Erect",
                         "study_datetime": when,
                         "path": f"files/p{str(s)[:2]}/p{s}/s{study_id}/{dicom_id}.png",
                         "aux_hadm_id": h, "aux_t": t, "aux_where": where, "aux_findings": frozenset(present)})
            for f in FINDINGS:
                labels.append((dicom_id, study_id, s, f, f in present))
            labels.append((dicom_id, study_id, s, "no_finding", not present))
    meta_df = pd.DataFrame(meta)
    lab_df = pd.DataFrame(labels, columns=["dicom_id", "study_id", "subject_id", "label", "present"])
    return meta_df, lab_df


def codes(b: Block, pressor_hadm: set[int]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """diagnoses_icd, procedures_icd and the hidden latent table."""
    a, rng = b.adm, model.block_rng(b.seed, b.block, 14)
    dx, px, latent = [], [], []
    for i in range(len(a)):
        s, h = int(a.subject_id[i]), int(a.hadm_id[i])
        cond = {c for c, on in zip(catalog.CONDITIONS, a.cond[i]) if on}
        icu_h = (a.icu_out_h[i] - a.icu_in_h[i]) if a.icu[i] else 0.0
        codes_ = []
        for cname in catalog.CONDITIONS:
            if cname in cond:
                opts = catalog.CONDITION_ICD[cname]
                codes_.append(opts[int(rng.integers(len(opts)))])
        ventilated = a.icu[i] and (a.sp[i] > 2.3 or (cond & {"pneumonia", "copd_exacerbation"} and a.sp[i] > 1.9))
        if h in pressor_hadm and "sepsis" in cond:
            codes_.append(catalog.EXTRA_ICD["septic_shock"])
        if ventilated:
            codes_.append(catalog.EXTRA_ICD["resp_failure_hypercapnic" if "copd_exacerbation" in cond
                                            else "resp_failure_hypoxic"])
        if "gi_bleed" in cond and rng.random() < 0.7:
            codes_.append(catalog.EXTRA_ICD["posthemorrhagic_anemia"])
        if "heart_failure" in cond and rng.random() < 0.3:
            codes_.append(catalog.EXTRA_ICD["hyponatremia"])
        for j, cname in enumerate(catalog.COMORBIDITIES):
            if b.cm[i, j] and not (cname == "chf" and "heart_failure" in cond) and not (
                    cname == "copd" and "copd_exacerbation" in cond):
                codes_.append(catalog.COMORBIDITY_ICD[cname])
        if rng.random() < 0.35:
            codes_.append(catalog.EXTRA_ICD["hyperlipidemia"])
        if rng.random() < (0.6 if b.cm[i, 1] else 0.2):
            codes_.append(catalog.EXTRA_ICD["ex_smoker"])
        if a.elective[i]:
            codes_.insert(0, "Z4889")  # encounter for other specified surgical aftercare
        seen = []
        for code in codes_:
            if code not in seen:
                seen.append(code)
        dx += [(s, h, k + 1, code, 10) for k, code in enumerate(seen)]

        day = lambda hours: b.ts(i, hours).astype("datetime64[D]")  # noqa: E731
        procs = []
        if a.icu[i] and (h in pressor_hadm or rng.random() < 0.3):
            procs.append(("central_line", a.icu_in_h[i] + 1))
        if ventilated:
            procs.append(("intubation", a.icu_in_h[i] + 0.5))
            procs.append(("vent_short" if icu_h < 24 else "vent_medium" if icu_h < 96 else "vent_long",
                          a.icu_in_h[i] + 0.5))
        if "gi_bleed" in cond:
            if rng.random() < 0.8:
                procs.append(("transfusion", 2.0))
            if rng.random() < 0.85:
                procs.append(("egd", rng.uniform(6, 30)))
        if "pneumothorax" in cond and rng.random() < 0.8:
            procs.append(("chest_tube_right" if rng.random() < 0.5 else "chest_tube_left", rng.uniform(2, 12)))
        if "aki" in cond and a.sp[i] > 1.6 and rng.random() < 0.5:
            procs.append(("dialysis", rng.uniform(12, 48)))
        if "chest_pain" in cond and rng.random() < 0.25:
            procs.append(("pci", rng.uniform(4, 30)))
        procs = [(k, t) for k, t in procs if t < b.end_h[i]]
        px += [(s, h, k + 1, day(t), catalog.PROCEDURE_ICD[name], 10) for k, (name, t) in enumerate(procs)]
        latent.append((s, h, ",".join(sorted(cond)), round(float(a.s0[i]), 4), round(float(a.sp[i]), 4),
                       round(float(a.tp[i]), 3), round(float(a.tau[i]), 3), bool(a.dies[i]), bool(a.icu[i]),
                       bool(a.readmit30[i]), round(float(a.frailty[i]), 4), bool(ventilated)))
    diagnoses = pd.DataFrame(dx, columns=["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"])
    procedures = pd.DataFrame(px, columns=["subject_id", "hadm_id", "seq_num", "chartdate", "icd_code",
                                           "icd_version"])
    latent_df = pd.DataFrame(latent, columns=["subject_id", "hadm_id", "conditions", "severity_admit",
                                              "severity_peak", "peak_hour", "recovery_tau_h", "dies", "icu",
                                              "readmit_30d", "frailty", "ventilated"])
    return diagnoses, procedures, latent_df


def notes(b: Block, cxr: pd.DataFrame, diagnoses: pd.DataFrame, titles: dict[str, str]) -> tuple[pd.DataFrame,
                                                                                                  pd.DataFrame]:
    a, rng = b.adm, model.block_rng(b.seed, b.block, 15)
    seq: dict[int, int] = {}
    rad = []
    prior: dict[int, frozenset] = {}
    for r in cxr.itertuples(index=False):
        s = r.subject_id
        n = seq[s] = seq.get(s, 0) + 1
        text = radiology_text(r, prior.get(r.aux_hadm_id), rng)
        prior[r.aux_hadm_id] = r.aux_findings
        st = r.study_datetime + np.timedelta64(int(rng.uniform(1.0, 8.0) * 3600), "s")
        rad.append((f"{s}-RR-{n}", s, r.aux_hadm_id, "RR", n, r.study_datetime, st, text))
    dx_by = {h: list(g["icd_code"]) for h, g in diagnoses.groupby("hadm_id")} if len(diagnoses) else {}
    dis, dseq = [], {}
    for i in range(len(a)):
        if a.dies[i]:
            continue
        s, h = int(a.subject_id[i]), int(a.hadm_id[i])
        n = dseq[s] = dseq.get(s, 0) + 1
        end = b.ts(i, b.end_h[i])
        text = discharge_text(b, i, [titles.get(c, c) for c in dx_by.get(h, [])], rng)
        dis.append((f"{s}-DS-{n}", s, h, "DS", n, end.astype("datetime64[D]").astype("datetime64[s]"),
                    end + np.timedelta64(int(rng.uniform(2, 30) * 3600), "s"), text))
    cols = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]
    return pd.DataFrame(dis, columns=cols), pd.DataFrame(rad, columns=cols)


def omr(b: Block) -> pd.DataFrame:
    """Outpatient vitals before the first admission (blood pressure, weight, BMI, height)."""
    p, a, rng = b.pats, b.adm, model.block_rng(b.seed, b.block, 16)
    first = a.slot == 0
    rows = []
    for i in np.nonzero(first)[0]:
        k = a.pat[i]
        s = int(p.subject_id[k])
        for _ in range(int(rng.integers(0, 4))):
            day = (a.admit_at[i] - np.timedelta64(int(rng.uniform(20, 700)), "D")).astype("datetime64[D]")
            sbp = int(125 + 10 * p.comorbid[k, 4] + rng.normal(0, 12))
            w_lbs = p.weight[k] * 2.2046 + rng.normal(0, 3)
            bmi = p.weight[k] / (p.height[k] / 100) ** 2
            rows += [(s, day, 1, "Blood Pressure", f"{sbp}/{int(sbp * 0.6 + rng.normal(0, 5))}"),
                     (s, day, 1, "Weight (Lbs)", f"{w_lbs:.1f}"), (s, day, 1, "BMI (kg/m2)", f"{bmi:.1f}"),
                     (s, day, 1, "Height (Inches)", f"{p.height[k] / 2.54:.0f}")]
    return pd.DataFrame(rows, columns=["subject_id", "chartdate", "seq_num", "result_name", "result_value"])
