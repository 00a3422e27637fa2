"""MIMIC-IV item ids the policies read, the risk families and their calibrated thresholds."""
from __future__ import annotations




# MIMIC-IV item ids (d_items / d_labitems) the policies read.
VITALS = {220045: "heart_rate", 220179: "sbp", 220050: "sbp", 220210: "resp_rate", 220277: "spo2",
          223762: "temp_c", 223761: "temp_f"}
LABS = {50813: "lactate", 50912: "creatinine", 51006: "bun", 51301: "wbc", 51265: "platelets",
        50885: "bilirubin", 50983: "sodium", 51222: "hemoglobin", 50882: "bicarbonate", 51003: "troponin_t",
        50963: "ntprobnp", 50889: "crp", 50821: "po2", 51237: "inr", 50820: "ph", 50818: "pco2"}
RISK_FAMILIES = ("mortality", "los_gt_3", "los_gt_7", "readmission_30d", "icu_transfer_24h")

# Points per family at or above which the answer is "yes": the accuracy-maximising cut on a development cohort
# (seed 11, 1,500 patients, balanced tasks like the demo's; bench/rules_calibrate.py), never the demo benchmark.
DEFAULT_THRESHOLDS = {"mortality": 10.5, "icu_transfer_24h": 6.0, "los_gt_3": 6.0, "los_gt_7": 8.5,
                      "readmission_30d": 4.0}
