"""The lab-order family: which order groups a morning draw will include."""
from __future__ import annotations


# Lab order groups: the d_labitems labels that mark a draw of the group.
LAB_GROUP_MARKERS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("basic metabolic",), ("Sodium", "Urea Nitrogen", "Creatinine")),
    (("complete blood", "blood count"), ("Hemoglobin", "White Blood Cells", "Platelet Count")),
    (("magnesium", "phosphate"), ("Magnesium", "Phosphate")),
    (("lactate",), ("Lactate",)),
    (("liver",), ("Alanine Aminotransferase (ALT)", "Asparate Aminotransferase (AST)", "Bilirubin, Total")),
    (("inr", "coagulation"), ("INR(PT)",)),
    (("troponin",), ("Troponin T",)),
    (("bnp",), ("NTproBNP",)),
    (("c-reactive", "crp"), ("C-Reactive Protein",)),
    (("blood gas",), ("pH", "pO2", "pCO2")),
]
# Routine panels drawn at (nearly) every morning draw; other groups follow the patient's own habit (see
# _decide_lab_orders). Chosen on the development cohort (seed 11), like the risk thresholds.
ALWAYS_DRAWN = ("basic metabolic", "complete blood", "magnesium")
HABIT_SHARE = 2 / 3
