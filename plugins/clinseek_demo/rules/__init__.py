"""The `rules` host: the offline, deterministic baseline (docs/baseline.md), split by concern.

`host` (the Host: which tool calls to make, then which family decides), `observations` (tool replies parsed
into tables), `queries` (the SQL and kb queries it issues), `package` (curated input parsed into the same
tables), one module per task family with its rules and its decision (`risk`, `diagnosis`, `labs`, `cxr`),
`families` (which policy a task gets), `answers` and `catalog` (MIMIC-IV item ids, thresholds). The names below are what the project's tests and calibration bench use.
"""
from clinseek_demo.rules.catalog import RISK_FAMILIES
from clinseek_demo.rules.cxr import finding_probabilities
from clinseek_demo.rules.families import policy_family
from clinseek_demo.rules.host import RulesConfig, RulesHost
from clinseek_demo.rules.observations import Observation, observations, parse_table
from clinseek_demo.rules.package import find_package, package_observations, parse_package
from clinseek_demo.rules.queries import ED_SQL, VITALS_SQL
from clinseek_demo.rules.risk import RISK_WEIGHTS, feature_vector, risk_features, risk_points, warning_score

__all__ = ["RISK_FAMILIES", "RISK_WEIGHTS", "ED_SQL", "VITALS_SQL", "Observation", "RulesConfig", "RulesHost",
           "feature_vector", "find_package", "finding_probabilities", "observations", "package_observations",
           "parse_package", "parse_table", "policy_family", "risk_features", "risk_points", "warning_score"]
