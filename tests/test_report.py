import json
import os
import re
from pathlib import Path

import pytest

from clinseek.errors import UserError
from clinseek.report import build_report_data, write_report
from clinseek.report.sample import sample_records, write_sample_run

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def run(tmp_path):
    return write_sample_run(tmp_path / "run")


def test_report_is_one_self_contained_file(run):
    path = write_report(run)
    assert path == run / "report.html"
    text = path.read_text()
    # nothing is fetched: no external scripts, styles, images or fonts
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(" not in text
    assert "default-src 'none'" in text
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text,
                                re.S).group(1))
    assert data["episodes_total"] == 8 and len(data["episodes"]) == 8


def test_report_data_scores_usage_tools(run):
    d = build_report_data(run)
    assert set(d["scores"]["per_task"]) == {"mortality", "los_gt_3", "diagnosis_ccsr"}
    assert d["scores"]["per_task_type"]["risk_prediction"]["questions"] == 3
    assert d["usage"]["input_tokens"] == sum(1000 + 100 * n for n in range(8))
    assert d["tools"] == {"ehr_latest": 8, "kb_search": 8}
    assert d["status"] == {"completed": 7, "budget_exhausted": 1}
    assert d["timing"]["wall_s"]["max"] == pytest.approx(1.5 + 0.25 * 7)
    assert d["cost"]["total"] > 0 and d["run"]["host"] == {"provider": "openai", "model": "gpt-test"}


def test_observation_text_cannot_break_out_of_the_data_script(tmp_path):
    results, trajs = sample_records()
    trajs[0]["messages"][3]["content"] = "</script><script>alert(1)</script><!-- x"
    run = tmp_path / "run"
    run.mkdir()
    for name, rows in (("results.jsonl", results), ("trajectories.jsonl", trajs)):
        (run / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = write_report(run).read_text()
    assert "</script><script>alert(1)" not in text
    assert text.count("</script>") == 2  # the data block and the code block, nothing injected


def test_long_observations_and_many_episodes_are_cut_and_said_so(run):
    d = build_report_data(run, max_episodes=3, max_observation_chars=20)
    assert d["episodes_shown"] == 3 and d["episodes_total"] == 8
    tool_msg = d["episodes"][0]["messages"][3]
    assert "[report cut" in tool_msg["content"] and d["episodes"][0]["observations_cut"] == 2


def test_missing_run_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        write_report(tmp_path)


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium")
def test_report_renders_in_chromium_and_the_viewer_opens_an_episode(run, tmp_path):
    from playwright.sync_api import sync_playwright

    path = write_report(run)
    requests = []
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            assert page.text_content("#title") == "clinseek report: sample"
            meta = page.text_content("#meta")
            assert "started 2026-11-25T12:00:00+00:00" in meta and "ended 2026-11-25T12:01:00+00:00" in meta
            assert page.is_hidden("#banner")  # nothing errored, nothing odd in the files
            assert page.locator("#per-task tr").count() == 4  # header + 3 tasks
            assert "ehr_latest" in page.text_content("#tool-bars")
            assert page.locator("#episode-list tr.ep").count() == 8
            assert page.is_hidden("#viewer")
            # open the diagnosis episode of run 1 (cites E1 and E2)
            page.locator("#episode-list tr.ep", has_text="diagnosis_ccsr").nth(1).click()
            page.wait_for_selector("#viewer", state="visible")
            assert "diagnosis_ccsr_4_40" in page.text_content("#viewer-title")
            assert page.locator("#viewer-messages li.msg").count() == 8
            assert page.locator("#viewer-messages li.msg.tool.cited").count() == 2
            assert "E1 ehr_latest" in page.text_content("#viewer-cited")
            assert "finish(" in page.text_content("#viewer-messages")
            shot = os.environ.get("CLINSEEK_REPORT_SCREENSHOT")
            if shot:  # docs/img/report.png is made with this test
                Path(shot).parent.mkdir(parents=True, exist_ok=True)
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=shot, full_page=False)
            page.fill("#episode-filter", "mortality")
            page.click("#viewer-close")
            assert page.is_hidden("#viewer")
            assert page.locator("#episode-list tr.ep").count() == 4
        finally:
            browser.close()
    assert errors == []
    assert all(u.startswith("file://") for u in requests)


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium")
def test_report_of_a_run_that_only_errored_shows_the_reasons_and_no_score(tmp_path):
    from playwright.sync_api import sync_playwright

    from clinseek.report.sample import EPISODES

    run = write_sample_run(tmp_path / "run", [e[:6] + ("error",) + e[7:] for e in EPISODES])
    path = write_report(run)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            assert page.is_visible("#banner")
            banner = page.text_content("#banner")
            assert "All 8 episodes ended in error: there is no score." in banner
            assert "8 × max_turns reached" in banner
            assert "0.0" not in page.text_content("#overall")  # no score numbers, not zeros
        finally:
            browser.close()
    assert errors == []
