"""The Task model reads ClinSeek-Bench rows as released."""
from __future__ import annotations

from clinseek.tasks import Task


def test_bench_row_with_ground_truth_and_multimodal_fields():
    row = {"qid": 17, "subject_id": 10000032, "hadm_id": 22595853, "prediction_time": "2180-05-07 10:00:00",
           "task": "cxr_findings", "task_type": "multimodal", "question": "Which findings?",
           "candidates": ["Cardiomegaly", "Edema"], "ground_truth": "Edema", "study_ids": [50414267],
           "image_paths": ["files/p10/p10000032/s50414267/02aa804e.jpg"], "input": "events...",
           "split": "test"}
    task = Task.model_validate(row)
    assert task.qid == "17" and task.label == ["Edema"]
    assert task.study_ids == [50414267] and task.image_paths[0].endswith("02aa804e.jpg")
    assert task.input == "events..." and task.extra == {"split": "test"}
    view = task.public_view()
    assert "label" not in view and view["candidates"] == ["Cardiomegaly", "Edema"]
