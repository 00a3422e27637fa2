"""The rules host on a small synthetic cohort built by the benchmark's own code, through the real ehr tools."""
import asyncio
import json

import pytest

from clinseek.agent import AgentLimits, EpisodeRunner, ToolBox
from clinseek_demo.rules import RulesConfig, RulesHost
from clinseek.tasks import Task

FAMILIES = ["mortality", "los_gt_3", "los_gt_7", "readmission_30d", "icu_transfer_24h", "diagnosis_ccsr",
            "lab_orders_24h"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from clinseek_demo.benchmark import build_tasks
    from clinseek_demo.build import build_cohort
    from clinseek_ehr.toolset import EhrConfig, EhrToolset

    root = tmp_path_factory.mktemp("cohort")
    build_cohort(root, patients=80, seed=3, images=False)
    build_tasks(root / "cohort.duckdb", root / "tasks.jsonl", per_task=4, seed=3, tasks=FAMILIES)
    tasks = [Task.model_validate(json.loads(x)) for x in (root / "tasks.jsonl").read_text().splitlines() if x]
    ehr = EhrToolset(EhrConfig(database=str(root / "cohort.duckdb")), None)
    ehr.open()
    yield tasks, ehr
    ehr.close()


def _run_all(tasks, ehr):
    host = RulesHost(RulesConfig())
    box = ToolBox.build([ehr])

    async def go():
        return await asyncio.gather(*(EpisodeRunner(task=t, run_index=0, host=host, toolbox=box,
                                                    limits=AgentLimits(), system="s", user=t.question).run()
                                      for t in tasks))

    return asyncio.run(go())


@pytest.mark.slow
def test_every_text_family_completes_with_cited_evidence_and_no_refused_query(cohort):
    tasks, ehr = cohort
    assert {t.task for t in tasks} == set(FAMILIES)
    records = _run_all(tasks, ehr)
    for task, (result, traj) in zip(tasks, records):
        assert result["status"] == "completed", (task.qid, result["reason"])
        refused = [m["content"] for m in traj["messages"] if m["role"] == "tool" and m["is_error"]]
        assert refused == [], (task.qid, refused)
        assert result["answer"] and set(result["answer"]) <= set(task.candidates), task.qid
        assert result["cited_evidence"], task.qid
    # concurrent episodes, same answers as a second pass: the policy is deterministic and stateless
    again = _run_all(tasks, ehr)
    assert [r["answer"] for r, _ in records] == [r["answer"] for r, _ in again]
