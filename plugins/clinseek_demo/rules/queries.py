"""The SQL the policies run through ehr_sql (DuckDB dialect over the episode's scoped tables), and kb queries."""
from __future__ import annotations

from datetime import datetime

from clinseek_demo.rules.catalog import LABS, VITALS


# SQL the policies run through ehr_sql (DuckDB dialect over the episode's scoped tables) ------------------------

def _latest_sql(table: str, ids: dict[int, str]) -> str:
    return (f"SELECT itemid, valuenum, charttime FROM (SELECT itemid, valuenum, charttime, row_number() OVER "
            f"(PARTITION BY itemid ORDER BY charttime DESC) AS rn FROM {table} WHERE itemid IN "
            f"({', '.join(str(i) for i in sorted(ids))}) AND valuenum IS NOT NULL) AS latest WHERE rn = 1 "
            f"ORDER BY itemid")


VITALS_SQL = _latest_sql("chartevents", VITALS)
_CURRENT = "(SELECT hadm_id FROM admissions ORDER BY admittime DESC LIMIT 1)"
# Latest and first value of each lab in this admission: the level and its trend in one query.
LABS_SQL = ("SELECT itemid, arg_max(valuenum, charttime) AS valuenum, arg_min(valuenum, charttime) AS first_value, "
            "max(charttime) AS charttime, count(*) AS n FROM labevents WHERE valuenum IS NOT NULL AND itemid IN "
            f"({', '.join(str(i) for i in sorted(LABS))}) AND hadm_id = {_CURRENT} GROUP BY itemid ORDER BY itemid")
CONTEXT_SQL = ("SELECT p.anchor_age, p.gender, a.admission_type, a.admittime, "
               "(SELECT count(*) FROM admissions) AS admissions_so_far, "
               f"(SELECT count(*) FROM icustays WHERE hadm_id = {_CURRENT}) AS icu_stays_this_admission "
               "FROM patients AS p CROSS JOIN "
               "(SELECT admission_type, admittime FROM admissions ORDER BY admittime DESC LIMIT 1) AS a")
# Ward patients have no chartevents (ICU only, as in MIMIC): their latest vitals are the ED's before admission.
ED_SQL = ("SELECT v.charttime, v.heartrate, v.resprate, v.o2sat, v.sbp, v.temperature, t.acuity FROM vitalsign AS v "
          "JOIN edstays AS e ON v.stay_id = e.stay_id LEFT JOIN triage AS t ON t.stay_id = e.stay_id "
          f"WHERE e.hadm_id = {_CURRENT} ORDER BY v.charttime DESC LIMIT 1")
ED_COLUMNS = {"heartrate": "heart_rate", "resprate": "resp_rate", "o2sat": "spo2", "sbp": "sbp",
              "temperature": "temp_f", "acuity": "acuity"}
HISTORY_SQL = ("SELECT icd_code, icd_version, count(*) AS n FROM diagnoses_icd GROUP BY icd_code, icd_version "
               "ORDER BY n DESC, icd_code LIMIT 60")
MEDS_SQL = (f"SELECT drug, route, min(starttime) AS first_start FROM prescriptions WHERE hadm_id = {_CURRENT} "
            "GROUP BY drug, route ORDER BY first_start LIMIT 60")


def lab_orders_sql(cutoff: datetime) -> str:
    """Per lab: on how many of this admission's calendar days it was drawn, out of how many, and when last."""
    return ("SELECT d.label, count(DISTINCT CAST(l.charttime AS DATE)) AS days_drawn, "
            f"(SELECT date_diff('day', CAST(admittime AS DATE), DATE '{cutoff:%Y-%m-%d}') + 1 FROM admissions "
            "ORDER BY admittime DESC LIMIT 1) AS days_in_hospital, max(l.charttime) AS last_drawn "
            f"FROM labevents AS l JOIN d_labitems AS d ON l.itemid = d.itemid WHERE l.hadm_id = {_CURRENT} "
            "GROUP BY d.label ORDER BY d.label")


KB_QUERIES = {
    "mortality": "early warning score NEWS2 lactate in-hospital mortality",
    "icu_transfer_24h": "early warning score deterioration ICU transfer",
    "los_gt_3": "illness severity length of hospital stay",
    "los_gt_7": "illness severity prolonged length of stay",
    "readmission_30d": "30-day readmission risk factors heart failure COPD frailty",
    "diagnosis_ccsr": "sepsis criteria lactate white cell count",
}
