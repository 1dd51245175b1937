"""worker.logs: JSON lines off a terminal, text on one, the job and team on every line."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from worker.logs import bound, configure, current, make_handler


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def root():
    logger = logging.getLogger()
    saved = (list(logger.handlers), logger.level)
    yield logger
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_the_bound_job_and_team_from_any_logger(root, monkeypatch):
    monkeypatch.delenv("GORA_LOG_FORMAT", raising=False)
    stream = io.StringIO()  # not a terminal
    configure("INFO", stream)
    logging.getLogger("celery.worker").info("outside %s", "a job")
    with bound("ftjob-1", "team-a"):
        logging.getLogger("worker.supervisor").info("child %d started", 42)
        logging.getLogger("celery.app.trace").warning("third-party line")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("worker.child").exception("failed")
    logging.getLogger("worker.x").debug("below the level")
    records = [json.loads(line) for line in lines(stream)]
    assert [r["message"] for r in records] == [
        "outside a job",
        "child 42 started",
        "third-party line",
        "failed",
    ]
    assert records[0]["job_id"] is None and records[0]["team_id"] is None
    for record in records[1:]:
        assert record["job_id"] == "ftjob-1" and record["team_id"] == "team-a"
    assert records[1]["logger"] == "worker.supervisor" and records[1]["level"] == "INFO"
    assert records[2]["level"] == "WARNING"
    assert "ValueError: boom" in records[3]["exc"]
    assert records[1]["ts"].endswith("+00:00") and isinstance(records[1]["process"], int)
    assert current() == (None, None)


def test_text_on_a_terminal_and_the_override(root, monkeypatch):
    monkeypatch.delenv("GORA_LOG_FORMAT", raising=False)
    tty = Tty()
    configure(logging.INFO, tty)
    log = logging.getLogger("worker.supervisor")
    log.info("idle")
    with bound("ftjob-2", "team-b"):
        log.info("running")
    first, second = lines(tty)
    assert "[job=- team=-] idle" in first and "INFO" in first and "worker.supervisor" in first
    assert "[job=ftjob-2 team=team-b] running" in second
    monkeypatch.setenv("GORA_LOG_FORMAT", "json")
    forced = Tty()
    configure(logging.INFO, forced)
    with bound("ftjob-3"):
        log.info("json anyway")
    assert json.loads(lines(forced)[0])["job_id"] == "ftjob-3"
    assert len(root.handlers) == 1  # configure replaces, never stacks handlers


def test_extra_wins_and_threads_have_their_own_context(monkeypatch):
    monkeypatch.setenv("GORA_LOG_FORMAT", "json")
    stream = io.StringIO()
    log = logging.getLogger("tests.worker.logs")
    log.propagate = False
    handler = make_handler(stream)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with bound("ftjob-main", "team-main"):
            thread = threading.Thread(target=lambda: log.info("from a thread"))
            thread.start()
            thread.join()
            log.info("explicit", extra={"job_id": "ftjob-other"})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    from_thread, explicit = (json.loads(line) for line in lines(stream))
    assert from_thread["job_id"] is None  # a new thread starts with an empty context
    assert explicit["job_id"] == "ftjob-other" and explicit["team_id"] == "team-main"


def test_a_one_job_process_names_its_job_on_every_thread(root, monkeypatch):
    from worker.logs import set_process_job

    monkeypatch.setenv("GORA_LOG_FORMAT", "json")
    stream = io.StringIO()
    configure(logging.INFO, stream)
    log = logging.getLogger("worker.child")
    try:
        set_process_job("ftjob-child")
        log.info("loading")
        set_process_job("ftjob-child", "team-c")  # once the job row is read
        thread = threading.Thread(target=lambda: log.info("from a thread"))
        thread.start()
        thread.join()
        with bound("ftjob-inner", "team-i"):
            log.info("bound wins")
    finally:
        set_process_job(None)
    loading, threaded, inner = (json.loads(line) for line in lines(stream))
    assert (loading["job_id"], loading["team_id"]) == ("ftjob-child", None)
    assert (threaded["job_id"], threaded["team_id"]) == ("ftjob-child", "team-c")
    assert (inner["job_id"], inner["team_id"]) == ("ftjob-inner", "team-i")
    assert current() == (None, None)


def test_ranks_of_a_multi_process_job_name_themselves(root, monkeypatch):
    monkeypatch.setenv("GORA_LOG_FORMAT", "json")
    stream = io.StringIO()
    configure("INFO", stream)
    monkeypatch.setenv("WORLD_SIZE", "1")
    logging.getLogger("worker.child").info("one process")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    logging.getLogger("worker.child").info("second rank")
    single, ranked = (json.loads(line) for line in lines(stream))
    assert "rank" not in single
    assert ranked["rank"] == 1
