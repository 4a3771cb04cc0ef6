"""The job message stream: per-job ``job_seq``, the log written before each push, and
nodetool's ``reconnect_job`` (attach, ``job_resumed``, replay after ``last_seq``)."""

from __future__ import annotations

from support.memory import CONN, MemoryPorts, key, stored_job

from comfyroute import messages
from comfyroute.executors.base import OutputFile
from comfyroute.jobs import lifecycle
from comfyroute.jobs.stream import MAX_REPLAY, publish, reconnect_job
from comfyroute.ports import Caller
from comfyroute.protocol import JobStatus
from comfyroute.protocol.commands import ReconnectJobData

NEW = "conn-2"
ALICE_AGAIN = Caller(user_id="alice", connection_id=NEW)


def _update(ports: MemoryPorts, job_id: str = "j1") -> None:
    job = ports.jobs.records[key(job_id)]
    assert publish(ports, job, [messages.job_update(job)]) is None


def test_every_message_of_a_job_is_numbered_from_one_per_job(ports: MemoryPorts) -> None:
    stored_job(ports, "j1")
    stored_job(ports, "j2")
    _update(ports, "j1")
    _update(ports, "j2")
    _update(ports, "j1")
    assert [m["job_seq"] for m in ports.pusher.messages(CONN) if m["job_id"] == "j1"] == [1, 2]
    assert [m["job_seq"] for m in ports.pusher.messages(CONN) if m["job_id"] == "j2"] == [1]


def test_the_log_is_written_even_when_the_push_finds_the_connection_gone(ports: MemoryPorts) -> None:
    job = stored_job(ports)
    ports.pusher.gone.add(CONN)
    assert publish(ports, job, [messages.job_update(job)]) == "connection gone"
    assert ports.message_log.last_seq(key("j1")) == 1
    assert ports.connections.records[CONN].gone


def test_a_job_followed_on_another_connection_gets_the_push_there(ports: MemoryPorts) -> None:
    stale = stored_job(ports)
    ports.connections.put(NEW, "alice")
    lifecycle.attach(ports.jobs, key("j1"), NEW)
    # The caller still holds the record from before the attach: the push follows the job.
    publish(ports, stale, [messages.job_update(stale)])
    assert ports.pusher.messages(NEW, "job_update")
    assert not ports.pusher.messages(CONN)


def test_outputs_are_logged_without_their_url_or_bytes(ports: MemoryPorts) -> None:
    out = ports.outputs.put(
        "j1",
        0,
        OutputFile(
            node_id="2", output_name="images", kind="image", filename="a.png", content_type="image/png", data=b"png"
        ),
    )
    job = stored_job(ports, status=JobStatus.COMPLETED, outputs=[out])
    publish(ports, job, messages.output_updates(job, ports.outputs, 60))
    ((_, logged),) = ports.message_log.read(key("j1"), 0, 10, limit=10)
    assert "uri" not in logged["value"]
    assert "data" not in logged["value"]
    assert logged["value"]["filename"] == "a.png"


def test_reconnect_job_attaches_and_replays_what_came_after_last_seq(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.RUNNING)
    for _ in range(3):
        _update(ports)
    ports.connections.put(NEW, "alice")
    reconnect_job(ports, ALICE_AGAIN, ReconnectJobData(job_id="j1", workflow_id=None, last_seq=1))
    assert ports.jobs.records[key("j1")].connection_id == NEW
    resumed, *replay = ports.pusher.messages(NEW)
    assert resumed["type"] == "job_resumed"
    assert (resumed["status"], resumed["last_seq"], resumed["replay_count"]) == ("running", 3, 2)
    assert [m["job_seq"] for m in replay] == [2, 3]
    # Later pushes go to the new connection, numbered on.
    _update(ports)
    assert ports.pusher.messages(NEW)[-1]["job_seq"] == 4


def test_reconnect_job_without_last_seq_replays_everything_and_signs_fresh_urls(ports: MemoryPorts) -> None:
    out = ports.outputs.put(
        "j1",
        0,
        OutputFile(
            node_id="2", output_name="images", kind="image", filename="a.png", content_type="image/png", data=b"png"
        ),
    )
    job = stored_job(ports, status=JobStatus.COMPLETED, outputs=[out])
    publish(ports, job, [messages.job_update(job), *messages.output_updates(job, ports.outputs, 60)])
    reconnect_job(ports, ALICE_AGAIN, ReconnectJobData(job_id="j1"))
    resumed, update, output = ports.pusher.messages(NEW)
    assert (resumed["status"], resumed["replay_count"]) == ("finished", 2)
    assert update["status"] == "completed"
    assert output["value"]["uri"].startswith("memory://jobs/j1/")
    # A finished job is not moved: nothing more will be pushed for it.
    assert ports.jobs.records[key("j1")].connection_id == CONN


def test_reconnect_job_past_the_end_replays_nothing(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.RUNNING)
    _update(ports)
    reconnect_job(ports, ALICE_AGAIN, ReconnectJobData(job_id="j1", last_seq=9))
    (resumed,) = ports.pusher.messages(NEW)
    assert (resumed["last_seq"], resumed["replay_count"], resumed["replay_incomplete"]) == (1, 0, False)


def test_reconnect_job_of_a_job_with_no_log_sends_its_state(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.FAILED, error="boom")
    reconnect_job(ports, ALICE_AGAIN, ReconnectJobData(job_id="j1", last_seq=0))
    resumed, update = ports.pusher.messages(NEW)
    assert resumed["replay_count"] == 1
    assert (update["status"], update["error"]) == ("failed", "boom")


def test_a_long_log_replays_its_newest_messages_and_says_it_cut(ports: MemoryPorts) -> None:
    job = stored_job(ports, status=JobStatus.RUNNING)
    publish(ports, job, [messages.job_update(job)] * (MAX_REPLAY + 5))
    reconnect_job(ports, ALICE_AGAIN, ReconnectJobData(job_id="j1", last_seq=0))
    resumed, *replay = ports.pusher.messages(NEW)
    assert resumed["replay_incomplete"] is True
    assert len(replay) == MAX_REPLAY
    assert replay[-1]["job_seq"] == MAX_REPLAY + 5


def test_someone_elses_job_looks_missing_and_is_not_moved(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.RUNNING, user_id="bob")
    reconnect_job(ports, ALICE_AGAIN, ReconnectJobData(job_id="j1", workflow_id="wf-1"))
    (error,) = ports.pusher.messages(NEW)
    assert (error["type"], error["code"], error["job_id"], error["workflow_id"]) == ("error", "not_found", "j1", "wf-1")
    assert ports.jobs.records[key("j1", "bob")].connection_id == CONN


def test_a_workflow_id_that_is_not_the_jobs_looks_missing(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.RUNNING, workflow_id="wf-1")
    reconnect_job(ports, ALICE_AGAIN, ReconnectJobData(job_id="j1", workflow_id="wf-2"))
    (error,) = ports.pusher.messages(NEW)
    assert error["code"] == "not_found"
    assert ports.jobs.records[key("j1")].connection_id == CONN
