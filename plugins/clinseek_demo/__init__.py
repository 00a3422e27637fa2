"""The synthetic MIMIC-IV-shaped cohort, its ClinSeek-style benchmark, and the MIMIC-IV importer.

Entry points: `demo.ensure_demo` (cached demo cohort + tasks), `build.build_cohort`, `benchmark.build_tasks`,
`importer.import_mimic_iv`, `source.DemoTaskSource` (task source "demo"), `cli.data` (`clinseek data ...`).
Nothing heavy is imported here.
"""

GENERATOR_VERSION = "4"  # part of the demo cache folder name: bump when the same seed would give other rows
DB_NAME = "cohort.duckdb"
