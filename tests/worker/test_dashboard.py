"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against the app served by
uvicorn and a real worker: sign in, a bad file's line errors, a job submitted from the page that runs
to ``succeeded`` with its loss drawn from live events, the heatmap's hover against GET /allocation,
the adapter download, a cancel, and a second team that sees nothing of the first's. Screenshots of
each page go to the test's folder and, when GORA_SCREENSHOTS names one, there too (the README's)."""

from __future__ import annotations

import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from service.api.app import create_app
from tests.helpers.api import ADMIN_TOKEN, jsonl, new_team
from tests.helpers.jobs import POOL, classification_rows, preference_rows, submit, wait_for
from tests.helpers.live_server import serve
from tests.helpers.models import MINILM, SMOLLM

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
JOB_TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def live_url(stack) -> Iterator[str]:
    with serve(create_app(stack.settings)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator:
    assert Path(CHROMIUM).exists(), "no Chromium: apt-get install chromium (make test does)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Shots:
    def __init__(self, folder: Path):
        self.folder = folder
        self.extra = (
            Path(os.environ["GORA_SCREENSHOTS"]) if os.environ.get("GORA_SCREENSHOTS") else None
        )

    def take(self, page, name: str) -> None:
        page.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.folder / f"{name}.png", self.extra / f"{name}.png")


def sign_in(browser, url: str, key: str, width: int = 1280):
    page = browser.new_context(
        viewport={"width": width, "height": 900}, accept_downloads=True
    ).new_page()
    page.goto(f"{url}/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Jobs").wait_for()
    return page


def submit_from_form(page, model: str, r_ref: int, probe_steps: int) -> str:
    """Fills the new-job form (one epoch) for the uploaded file, submits, and waits on the job's
    page until it succeeds; returns the job's id."""
    page.get_by_label("Model").select_option(model)
    page.get_by_label(re.compile("^r_ref")).fill(str(r_ref))
    page.get_by_label(re.compile("^Probe batches")).fill(str(probe_steps))
    page.get_by_label("Epochs").fill("1")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(re.compile(r"#/jobs/ftjob-"))
    page.locator("#job-status", has_text="succeeded").wait_for(timeout=JOB_TIMEOUT_MS)
    return page.url.rsplit("/", 1)[-1]


def test_a_team_runs_a_job_from_the_dashboard(stack, team, worker, live_url, browser, tmp_path):
    shots = Shots(tmp_path)
    page = sign_in(browser, live_url, team.key)
    page.get_by_text("No jobs yet").wait_for()
    shots.take(page, "jobs-empty")

    # A bad file's line errors, beside the lines; then a good one.
    page.get_by_role("link", name="New job").click()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "fine", "label": "a"}\n{"text": \n{"label": "b"}\n')
    page.get_by_label("Training file (JSONL)").set_input_files(str(bad))
    errors = page.get_by_role("list", name="Line errors")
    errors.wait_for()
    assert re.search(r"line 2", errors.inner_text()) and re.search(r"line 3", errors.inner_text())
    shots.take(page, "new-job-line-errors")
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl(classification_rows()))
    page.get_by_label("Training file (JSONL)").set_input_files(str(good))
    page.get_by_text("good.jsonl: processed").wait_for()
    # The form's ranges and defaults come from GET /v1/fine_tuning/adapter_settings.
    assert "≥ 1, ≤ 4096; default 8" in page.locator('label[for="r-ref"]').inner_text()
    # The job's page: live to succeeded, the loss drawn from the event stream.
    job_id = submit_from_form(page, MINILM, r_ref=4, probe_steps=2)
    train_line = page.locator('path[data-series="train loss"]')
    train_line.wait_for(state="attached")  # one step draws a point, not a line
    assert int(train_line.get_attribute("data-points")) >= 1
    log = page.get_by_role("list", name="Events, oldest first").inner_text()
    assert "The job has successfully completed" in log

    # The heatmap's hover names the module and its rank, as GET /allocation has them.
    allocation = stack.client.get(
        f"/v1/fine_tuning/jobs/{job_id}/allocation", headers=team.headers
    ).json()
    layer = max(allocation["layers"], key=lambda x: x["rank"])
    page.locator(f'rect[data-module="{layer["name"]}"]').hover()
    tooltip = page.locator("#tooltip")
    assert f"{layer['name']}: rank {layer['rank']}," in tooltip.inner_text()
    # By keyboard too: a cell takes focus and says the same (its aria-label for screen readers).
    other = min(allocation["layers"], key=lambda x: x["rank"])
    cell = page.locator(f'rect[data-module="{other["name"]}"]')
    cell.focus()
    assert f"{other['name']}: rank {other['rank']}," in tooltip.inner_text()
    assert cell.get_attribute("aria-label").startswith(f"{other['name']}: rank {other['rank']},")
    # The spec as submitted ("auto" left as sent) beside the resolved one.
    page.get_by_text("Spec as submitted").click()
    submitted = page.get_by_label("Spec as submitted").inner_text()
    assert '"r_ref": 4' in submitted and '"learning_rate_multiplier"' not in submitted
    shots.take(page, "job")

    # The adapter download is the PEFT archive.
    with page.expect_download() as fetched:
        page.get_by_role("button", name="Download adapter (peft)").click()
    archive = tmp_path / "adapter.tar.gz"
    fetched.value.save_as(archive)
    with tarfile.open(archive) as opened:
        assert f"{job_id}-peft/adapter_config.json" in opened.getnames()

    # The pools: this session's worker online in its pool.
    page.get_by_role("link", name="Pools").click()
    page.get_by_role("table", name=f"Workers in pool {POOL}").wait_for()
    shots.take(page, "pools")

    # The jobs table lists it; at 390 px the page does not scroll sideways.
    page.get_by_role("link", name="Jobs").click()
    page.get_by_role("link", name=job_id).wait_for()
    shots.take(page, "jobs")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_url}/#/jobs/{job_id}")
    page.locator("#job-status", has_text="succeeded").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shots.take(page, "job-390px")


def test_cancel_from_the_page_and_teams_apart(stack, team, worker, live_url, browser, tmp_path):
    long_run = {"n_epochs": 50, "batch_size": 2, "max_steps": 400, "log_every_steps": 1,
                "checkpoint_every_steps": 1000}  # fmt: skip
    job = submit(stack.client, team, classification_rows(), model=MINILM, hyperparameters=long_run,
                 adapter={"type": "lora", "r_ref": 2, "target_modules": ["query"]})  # fmt: skip
    page = sign_in(browser, live_url, team.key)
    page.goto(f"{live_url}/#/jobs/{job['id']}")
    page.locator("#job-status", has_text="running").wait_for(timeout=JOB_TIMEOUT_MS)
    page.get_by_role("button", name="Cancel").click()
    page.locator("#job-status", has_text="cancelled").wait_for(timeout=JOB_TIMEOUT_MS)
    assert wait_for(stack.client, team, job["id"], {"cancelled"})["status"] == "cancelled"

    other = new_team(stack.client, stack.admin)
    theirs = sign_in(browser, live_url, other.key)
    theirs.get_by_text("No jobs yet").wait_for()
    theirs.goto(f"{live_url}/#/jobs/{job['id']}")
    theirs.get_by_role("alert").wait_for()
    assert "no fine-tuning job" in theirs.get_by_role("alert").inner_text()
    Shots(tmp_path).take(theirs, "other-team")

    # The admin token sees every team's jobs, and opens any of them.
    admin = sign_in(browser, live_url, ADMIN_TOKEN)
    admin.get_by_label("Acting for team").wait_for()
    admin.get_by_role("link", name=job["id"]).click()
    admin.locator("#job-status", has_text="cancelled").wait_for()
    Shots(tmp_path).take(admin, "admin-job")


def test_a_preference_file_runs_as_a_dpo_job_with_its_reward_drawn(
    stack, team, worker, live_url, browser, tmp_path
):
    page = sign_in(browser, live_url, team.key)
    page.get_by_role("link", name="New job").click()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(jsonl(preference_rows(range(1, 9))))
    page.get_by_label("Training file (JSONL)").set_input_files(str(pairs))
    page.get_by_text("pairs.jsonl: processed, 8 rows (preference)").wait_for()
    job_id = submit_from_form(page, SMOLLM, r_ref=2, probe_steps=1)
    job = stack.client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=team.headers).json()
    assert job["method"]["type"] == "dpo"  # the file's rows chose the method
    reward = page.locator('path[data-series="train reward accuracy"]')
    reward.wait_for(state="attached")
    assert int(reward.get_attribute("data-points")) >= 1
    assert "reward accuracy=" in page.get_by_role("list", name="Events, oldest first").inner_text()
    Shots(tmp_path).take(page, "dpo-job")


def test_a_searched_job_shows_the_rates_it_tried(stack, team, worker, live_url, browser, tmp_path):
    # Four steps: a budget of 6 plain jobs lets the search run one rung (a user would not).
    hyperparameters = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": "search",
                       "search_budget": 6.0}  # fmt: skip
    job = submit(stack.client, team, classification_rows(), model=MINILM,
                 hyperparameters=hyperparameters,
                 adapter={"type": "lora", "r_ref": 2, "target_modules": ["query"]})  # fmt: skip
    done = wait_for(stack.client, team, job["id"], {"succeeded"}, timeout_s=300)
    page = sign_in(browser, live_url, team.key)
    page.goto(f"{live_url}/#/jobs/{job['id']}")
    trials = page.get_by_role("table", name="Learning-rate search trials")
    trials.wait_for()
    rows = trials.locator("tbody tr")
    assert rows.count() == 3
    chosen = trials.locator("tr.chosen")
    assert chosen.locator("td").first.inner_text() == str(done["learning_rate_search"]["chosen"])
    assert page.locator('svg[data-chart="Validation loss by trial"] path').count() == 3
    Shots(tmp_path).take(page, "searched-job")
