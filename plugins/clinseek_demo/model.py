"""The latent generative model: patients, admissions, conditions and the severity course of each stay.

Everything observable (labs, vitals, orders, notes, images, codes) is drawn from this latent state in events.py, so
evidence seen before a prediction time is informative about outcomes after it, never a copy of them:

- a patient has an age, chronic comorbidities and a frailty score;
- an admission has acute conditions and a severity course s(t) in hours from admission: it starts at s0, may rise
  linearly to a peak sp at tp (deterioration, often after any early cutoff), then decays with time constant tau;
- outcomes follow from the course with noise: death near the peak (chance grows with sp, age, frailty), ICU while
  s(t) is above a patient-specific threshold, discharge once s(t) has fallen, readmission from frailty and severity.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clinseek_demo import catalog

BLOCK = 250  # patients per random stream: results do not depend on how blocks are grouped into chunks
MAX_ADMISSIONS = 4
EPOCH = np.datetime64("2100-01-01T00:00:00", "s")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Patients:
    pidx: np.ndarray  # global patient index
    subject_id: np.ndarray
    female: np.ndarray
    age: np.ndarray  # anchor_age
    anchor_year: np.ndarray
    year_group: np.ndarray  # index into catalog.ANCHOR_YEAR_GROUPS
    comorbid: np.ndarray  # (n, len(COMORBIDITIES)) bool
    frailty: np.ndarray
    race: np.ndarray
    insurance: np.ndarray
    language: np.ndarray
    marital: np.ndarray
    weight: np.ndarray  # kg
    height: np.ndarray  # cm
    dod: np.ndarray  # datetime64[s] or NaT


@dataclass
class Admissions:
    """One row per admission (flattened), times in hours relative to admittime unless named *_at (absolute)."""

    pat: np.ndarray  # row in Patients
    subject_id: np.ndarray
    hadm_id: np.ndarray
    slot: np.ndarray  # 0-based admission number of the patient
    admit_at: np.ndarray  # datetime64[s]
    elective: np.ndarray
    cond: np.ndarray  # (m, len(CONDITIONS)) bool
    s0: np.ndarray
    sp: np.ndarray
    tp: np.ndarray
    tau: np.ndarray
    dies: np.ndarray
    death_h: np.ndarray  # hours; nan if survives
    los_h: np.ndarray  # admittime -> dischtime
    icu: np.ndarray
    icu_in_h: np.ndarray
    icu_out_h: np.ndarray
    ed_h: np.ndarray  # hours spent in the ED before admittime (0 for elective)
    ed_out_h: np.ndarray  # edouttime relative to admittime (>= 0)
    readmit30: np.ndarray  # next admission within 30 days of discharge
    frailty: np.ndarray
    age: np.ndarray  # age at admission

    def __len__(self) -> int:
        return len(self.hadm_id)

    def severity(self, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
        """s(t) for admissions `idx` at hours `t` since their admittime (vectorised)."""
        s0, sp, tp, tau = self.s0[idx], self.sp[idx], self.tp[idx], self.tau[idx]
        t = np.asarray(t, dtype=float)
        rising = s0 + (sp - s0) * np.clip(t / np.maximum(tp, 1e-6), 0.0, 1.0)
        after = np.where(self.dies[idx], sp, sp * np.exp(-np.maximum(t - tp, 0.0) / tau))
        return np.where(t <= tp, np.where(tp > 0, rising, s0), after)


def block_rng(seed: int, block: int, stream: int) -> np.random.Generator:
    """Independent random stream per (seed, block of patients, purpose)."""
    return np.random.default_rng([seed, block, stream])


def simulate_patients(seed: int, block: int, first: int, n: int) -> Patients:
    rng = block_rng(seed, block, 0)
    pidx = np.arange(first, first + n)
    female = rng.random(n) < 0.48
    age = np.clip(np.round(rng.normal(64, 16, n)), 18, 91).astype(int)
    anchor_year = rng.integers(2110, 2190, n)
    year_group = rng.integers(0, len(catalog.ANCHOR_YEAR_GROUPS), n)
    base = np.array(catalog.COMORB_PREVALENCE)
    p = np.clip(base[None, :] * np.exp(0.03 * (age[:, None] - 65)), 0.01, 0.9)
    comorbid = rng.random((n, len(base))) < p
    frailty = rng.normal(0, 1, n) + 0.025 * (age - 65) + 0.3 * comorbid.sum(1) - 0.5
    pick = lambda options: np.array(options, dtype=object)[rng.integers(0, len(options), n)]  # noqa: E731
    race, insurance, language, marital = (pick(catalog.RACES), pick(catalog.INSURANCE), pick(catalog.LANGUAGES),
                                          pick(catalog.MARITAL))
    height = np.where(female, rng.normal(162, 7, n), rng.normal(176, 7, n))
    weight = np.clip(rng.normal(0, 1, n) * 16 + np.where(female, 72, 85), 40, 180)
    return Patients(pidx=pidx, subject_id=10_000_000 + pidx, female=female, age=age, anchor_year=anchor_year,
                    year_group=year_group, comorbid=comorbid, frailty=frailty, race=race, insurance=insurance,
                    language=language, marital=marital, weight=weight, height=height,
                    dod=np.full(n, np.datetime64("NaT"), dtype="datetime64[s]"))


def simulate_admissions(seed: int, block: int, pats: Patients) -> Admissions:
    rng = block_rng(seed, block, 1)
    n, K, C = len(pats.pidx), MAX_ADMISSIONS, len(catalog.CONDITIONS)
    cm = {name: pats.comorbid[:, i][:, None] for i, name in enumerate(catalog.COMORBIDITIES)}
    frail = pats.frailty[:, None]
    shape = (n, K)
    elective = rng.random(shape) < 0.12

    u = rng.random((n, K, C))
    c = catalog.COND
    cond = np.zeros((n, K, C), dtype=bool)
    cond[..., c["pneumonia"]] = u[..., c["pneumonia"]] < 0.24 + 0.15 * cm["copd"]
    cond[..., c["sepsis"]] = u[..., c["sepsis"]] < 0.24 + 0.14 * cond[..., c["pneumonia"]] + 0.05 * frail.clip(0)
    cond[..., c["heart_failure"]] = u[..., c["heart_failure"]] < 0.05 + 0.5 * cm["chf"]
    cond[..., c["aki"]] = u[..., c["aki"]] < 0.08 + 0.15 * cm["ckd"] + 0.18 * cond[..., c["sepsis"]]
    cond[..., c["copd_exacerbation"]] = u[..., c["copd_exacerbation"]] < 0.5 * cm["copd"]
    cond[..., c["gi_bleed"]] = u[..., c["gi_bleed"]] < 0.09
    cond[..., c["pneumothorax"]] = u[..., c["pneumothorax"]] < 0.035
    cond[..., c["chest_pain"]] = u[..., c["chest_pain"]] < 0.08
    cond[..., c["chest_pain"]] |= ~cond.any(-1)
    cond[elective] = False

    weights = np.array([catalog.CONDITION_SEVERITY[k] for k in catalog.CONDITIONS])
    s0 = (cond * weights).sum(-1) * rng.lognormal(0, 0.35, shape) + 0.15 * frail + 0.1
    s0 = np.where(elective, 0.2 * rng.lognormal(0, 0.3, shape), np.maximum(s0, 0.05))

    worsen = rng.random(shape) < _sigmoid(-1.3 + 0.9 * (s0 - 0.8) + 0.35 * frail)
    worsen &= ~elective
    tp = np.where(worsen, rng.uniform(8, 96, shape), 0.0)
    sp = s0 + np.where(worsen, rng.gamma(2.0, 0.45, shape), 0.0)
    age = pats.age[:, None] + rng.integers(0, 3, shape)
    # `hidden` is what no chart shows (goals of care, reserve): it keeps early evidence from settling the outcome
    hidden = rng.normal(0, 1.3, shape)
    dies = rng.random(shape) < _sigmoid(-6.0 + 1.6 * sp + 0.03 * (age - 65) + 0.3 * frail + hidden)
    # A patient who dies without a modelled deterioration declines slowly over days.
    slow = dies & (tp == 0)
    tp = np.where(slow, rng.uniform(24, 200, shape), tp)
    sp = np.where(slow, s0 + 0.3, sp)
    death_h = np.where(dies, tp + rng.exponential(6, shape), np.nan)

    tau = 26.0 * (1 + sp) * rng.lognormal(0, 0.35, shape)
    recover = tau * np.log(np.maximum(sp / 0.2, 1.05))
    los = np.maximum(tp + recover + rng.lognormal(np.log(18), 0.7, shape), 6.0)
    los = np.where(elective, rng.lognormal(np.log(60), 0.5, shape), los)
    los = np.where(dies, death_h, los)

    thr = 1.45 + rng.normal(0, 0.15, shape)
    icu = (sp > thr) & ~elective
    icu_in = np.where(s0 > thr, rng.uniform(0.5, 4, shape),
                      tp * (thr - s0) / np.maximum(sp - s0, 1e-6) + rng.uniform(0, 2, shape))
    icu_out = np.where(dies, death_h, tp + tau * np.log(np.maximum(sp / (0.8 * thr), 1.01)))
    icu_out = np.maximum(icu_out, icu_in + 12)
    icu_in = np.where(icu, icu_in, np.nan)
    icu_out = np.where(icu, icu_out, np.nan)
    # Survivors leave the ICU for a ward before going home.
    los = np.where(icu & ~dies, np.maximum(los, icu_out + rng.uniform(6, 48, shape)), los)
    icu_in = np.where(icu & dies & (icu_in >= death_h), np.maximum(death_h - 2, 0.25), icu_in)

    ed_h = np.where(elective, 0.0, rng.uniform(2, 9, shape))
    ed_out = np.where(elective, 0.0, rng.uniform(0, 1, shape))

    # Calendar: first admission within three years of the anchor year; later ones after a gap that is short for
    # frail, sick patients (30-day readmission) and long otherwise.
    n_cond = cond.sum(-1)
    p_re = _sigmoid(-2.7 + 0.45 * frail + 0.35 * sp + 0.25 * n_cond + 0.3 * (cm["chf"] | cm["copd"]))
    readmit = rng.random(shape) < p_re
    gap_days = np.where(readmit, rng.uniform(1, 30, shape), 31 + rng.exponential(400, shape))
    more = readmit | (rng.random(shape) < 0.35)
    post_death = rng.random(shape) < _sigmoid(-3.8 + 0.6 * frail + 0.4 * sp)
    post_death_days = rng.uniform(2, 365, shape)
    hour = np.where(elective, 7 + rng.uniform(0, 2, shape), rng.uniform(0, 24, shape))

    start = (pats.anchor_year - 2100).astype("int64") * 365 + rng.integers(0, 3 * 365, n)
    active = np.zeros(shape, dtype=bool)
    admit_days = np.zeros(shape)
    active[:, 0] = True
    day = start.astype(float)
    alive = np.ones(n, dtype=bool)
    dod = np.full(n, np.nan)
    for k in range(K):
        if k > 0:
            prev = k - 1
            disch_day = admit_days[:, prev] + los[:, prev] / 24
            nxt = disch_day + gap_days[:, prev]
            died_after = post_death[:, prev] & (disch_day + post_death_days[:, prev] < nxt)
            dod = np.where(active[:, prev] & died_after & np.isnan(dod), disch_day + post_death_days[:, prev], dod)
            alive &= ~(active[:, prev] & (dies[:, prev] | died_after))
            active[:, k] = active[:, prev] & alive & more[:, prev]
            day = np.floor(nxt)
        admit_days[:, k] = np.floor(day) + hour[:, k] / 24
    last = np.where(active, np.arange(K)[None, :], -1).max(1)
    died_last = dies[np.arange(n), last]
    dod = np.where(died_last, admit_days[np.arange(n), last] + death_h[np.arange(n), last] / 24, dod)
    # A readmission flag only counts when the next admission really happens.
    readmit30 = np.zeros(shape, dtype=bool)
    readmit30[:, :-1] = active[:, 1:] & readmit[:, :-1]
    pats.dod = np.where(np.isnan(dod), np.datetime64("NaT"),
                        EPOCH + (np.nan_to_num(dod) * 86400).astype("int64").astype("timedelta64[s]"))

    rows, slots = np.nonzero(active)
    admit_at = EPOCH + np.round(admit_days[rows, slots] * 86400).astype("int64").astype("timedelta64[s]")
    # Round admittime to the minute like MIMIC.
    admit_at = admit_at.astype("datetime64[m]").astype("datetime64[s]")
    take = lambda a: a[rows, slots]  # noqa: E731
    return Admissions(
        pat=rows, subject_id=pats.subject_id[rows], hadm_id=20_000_000 + pats.pidx[rows] * MAX_ADMISSIONS + slots,
        slot=slots, admit_at=admit_at, elective=take(elective), cond=cond[rows, slots], s0=take(s0), sp=take(sp),
        tp=take(tp), tau=take(tau), dies=take(dies), death_h=take(death_h), los_h=take(los), icu=take(icu),
        icu_in_h=take(icu_in), icu_out_h=take(icu_out), ed_h=take(ed_h), ed_out_h=take(ed_out),
        readmit30=take(readmit30), frailty=pats.frailty[rows], age=take(age))
