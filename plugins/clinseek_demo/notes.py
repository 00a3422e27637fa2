"""Free-text notes in MIMIC-IV-Note's style ('___' where PHI was removed), written from the latent state with noise:
a radiologist misses a finding now and then or hedges about one that is not there.
"""
from __future__ import annotations

import numpy as np

from clinseek_demo import catalog
from clinseek_demo.cxr_images import FINDINGS

SENTENCE = {
    "cardiomegaly": "The cardiac silhouette is enlarged.",
    "pleural_effusion": "There is a pleural effusion with blunting of the costophrenic angle.",
    "consolidation": "There is a focal consolidation.",
    "pulmonary_edema": "There is perihilar haziness and vascular congestion consistent with pulmonary edema.",
    "pneumothorax": "There is a pneumothorax with a visible pleural line.",
}
IMPRESSION = {"cardiomegaly": "Cardiomegaly.", "pleural_effusion": "Pleural effusion.",
              "consolidation": "Focal consolidation, concerning for pneumonia.",
              "pulmonary_edema": "Pulmonary edema.", "pneumothorax": "Pneumothorax."}
NEGATIVE = {"pleural_effusion": "No pleural effusion.", "pneumothorax": "No pneumothorax.",
            "consolidation": "No focal consolidation."}

COURSE = {
    "sepsis": "# Sepsis: presented with fever, tachycardia and hypotension with elevated lactate. Blood cultures were "
              "drawn and broad-spectrum antibiotics were started; fluids were given.",
    "pneumonia": "# Pneumonia: cough and fever with an infiltrate on chest radiograph, treated with antibiotics.",
    "heart_failure": "# Acute on chronic heart failure: volume overloaded on admission with elevated BNP; diuresed "
                     "with IV furosemide.",
    "aki": "# Acute kidney injury: creatinine elevated above baseline, likely prerenal; renally dosed medications.",
    "copd_exacerbation": "# COPD exacerbation: wheezing and hypercapnia, treated with steroids and nebulizers.",
    "gi_bleed": "# GI bleed: melena with a hemoglobin drop; PPI started, transfused, GI consulted.",
    "pneumothorax": "# Pneumothorax: dyspnea and pleuritic chest pain, managed with a chest tube.",
    "chest_pain": "# Chest pain: troponins trended, telemetry monitored.",
}


def radiology_text(study, prior_findings, rng: np.random.Generator) -> str:
    reported = []
    for f in FINDINGS:
        truly = f in study.aux_findings
        if (truly and rng.random() > 0.07) or (not truly and rng.random() < 0.03):
            reported.append((f, truly))
    view = "PORTABLE AP" if study.ViewPosition == "AP" else "PA AND LAT"
    lines = [f"EXAMINATION:  CHEST ({view})", "",
             "INDICATION:  ___ year old with " + ("shortness of breath" if study.aux_where != "ICU" else
                                                  "respiratory failure") + ", evaluate for acute process.", "",
             "COMPARISON:  " + ("Chest radiograph from ___." if prior_findings is not None else "None."), "",
             "FINDINGS:", ""]
    body = []
    for f, truly in reported:
        body.append(SENTENCE[f] if truly else f"Possible {f.replace('_', ' ')} cannot be excluded.")
    for f, neg in NEGATIVE.items():
        if f not in {x for x, _ in reported}:
            body.append(neg)
    if "cardiomegaly" not in {x for x, _ in reported}:
        body.append("The cardiomediastinal silhouette is within normal limits.")
    lines += [" ".join(body), "", "IMPRESSION:", ""]
    positives = [IMPRESSION[f] for f, truly in reported if truly]
    lines.append(" ".join(positives) if positives else "No acute cardiopulmonary process.")
    return "\n".join(lines) + "\n"


def discharge_text(b, i: int, diagnosis_titles: list[str], rng: np.random.Generator) -> str:
    a, p = b.adm, b.pats
    k = a.pat[i]
    sex = "F" if p.female[k] else "M"
    conds = [c for c, on in zip(catalog.CONDITIONS, a.cond[i]) if on]
    history = [name for name, on in zip(("CHF", "COPD", "CKD", "diabetes mellitus", "hypertension",
                                         "atrial fibrillation"), b.cm[i]) if on]
    complaint = catalog.CHIEF_COMPLAINT[conds[0]] if conds else "Elective procedure"
    course = [COURSE[c] for c in conds] or ["# Elective admission: procedure without complications."]
    if a.icu[i]:
        course.append(f"# Transferred to the ICU on hospital day {int(a.icu_in_h[i] // 24) + 1} for worsening "
                      f"clinical status.")
    primary = diagnosis_titles[:1] or ["___"]
    secondary = diagnosis_titles[1:6]
    condition = "Mental Status: Clear and coherent.\nLevel of Consciousness: Alert and interactive.\n" \
                "Activity Status: " + ("Ambulatory - Independent." if a.frailty[i] < 1 else
                                       "Ambulatory - requires assistance or aid (walker or cane).")
    return "\n".join([
        "Name:  ___                     Unit No:   ___", "",
        "Admission Date:  ___              Discharge Date:   ___", "",
        f"Date of Birth:  ___             Sex:   {sex}", "",
        "Service: MEDICINE", "", "Allergies: ", "No Known Allergies / Adverse Drug Reactions", "",
        "Chief Complaint:", complaint, "",
        "History of Present Illness:",
        f"___ year old {'woman' if sex == 'F' else 'man'} with a history of "
        f"{', '.join(history) if history else 'no significant medical problems'} who presents with "
        f"{complaint.lower()}.", "",
        "Brief Hospital Course:", *course, "",
        "Discharge Diagnosis:", "Primary:", *primary, "", "Secondary:", *(secondary or ["none"]), "",
        "Discharge Condition:", condition, "",
        "Followup Instructions:", "___", ""])
