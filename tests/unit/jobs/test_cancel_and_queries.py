"""cancel_job, get_job and list_jobs: the owner's view of their jobs."""

from __future__ import annotations

from support.memory import ALICE, CONN, MemoryPorts, key, stored_job

from comfyroute.credentials import CredentialsError
from comfyroute.jobs.cancel import cancel_job
from comfyroute.jobs.queries import get_job, list_jobs
from comfyroute.ports import Caller
from comfyroute.protocol import JobStatus

BOB = Caller("bob", "bob-conn")


def test_cancel_records_first_then_stops_the_executor_and_the_loop_reading_the_job_once(ports: MemoryPorts) -> None:
    stored_job(ports)
    cancel_job(ports, ALICE, "j1")
    assert ports.jobs.records[key("j1")].status is JobStatus.CANCELLED
    assert ports.executor.cancelled == ["exec-j1"]
    assert ports.state_machine.stopped == [("memory:execution:j1", "cancelled by the user")]
    (update,) = ports.pusher.messages(CONN)
    assert (update["status"], update["message"]) == ("cancelled", "cancelled by the user")
    assert ports.jobs.reads == 1


def test_cancel_of_a_finished_job_only_reports_it(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.COMPLETED, finished_at=1.0)
    cancel_job(ports, ALICE, "j1")
    assert ports.executor.cancelled == []
    assert ports.state_machine.stopped == []
    assert ports.pusher.messages(CONN)[0]["status"] == "completed"


def test_cancel_before_the_executor_took_the_job_leaves_that_to_submit(ports: MemoryPorts) -> None:
    stored_job(ports, executor_job_id=None, execution_arn=None)
    cancel_job(ports, ALICE, "j1")
    assert ports.jobs.records[key("j1")].status is JobStatus.CANCELLED
    assert ports.executors.built == []
    assert ports.state_machine.stopped == []


def test_cancel_still_stops_the_loop_when_the_executor_cannot_be_built(ports: MemoryPorts) -> None:
    stored_job(ports)
    ports.executors.refuse = CredentialsError("secret unusable")
    cancel_job(ports, ALICE, "j1")
    assert ports.jobs.records[key("j1")].status is JobStatus.CANCELLED
    assert len(ports.state_machine.stopped) == 1


def test_someone_elses_job_is_not_found_for_cancel_and_get(ports: MemoryPorts) -> None:
    stored_job(ports)
    cancel_job(ports, BOB, "j1")
    get_job(ports, BOB, "j1")
    assert [(m["code"], m["request"]) for m in ports.pusher.messages("bob-conn")] == [
        ("not_found", "cancel_job"),
        ("not_found", "get_job"),
    ]
    assert ports.jobs.records[key("j1")].status is JobStatus.QUEUED


def test_get_job_from_a_new_connection_moves_an_active_job_there(ports: MemoryPorts) -> None:
    stored_job(ports)
    get_job(ports, Caller("alice", "conn-2"), "j1")
    assert ports.jobs.records[key("j1")].connection_id == "conn-2"
    (msg,) = ports.pusher.messages("conn-2")
    assert (msg["type"], msg["job"]["status"]) == ("job", "queued")
    stored_job(ports, "done", status=JobStatus.COMPLETED, finished_at=1.0)
    get_job(ports, Caller("alice", "conn-3"), "done")
    assert ports.jobs.records[key("done")].connection_id == CONN


def test_list_jobs_shows_only_the_callers_newest_first(ports: MemoryPorts) -> None:
    stored_job(ports, "old", created_at=1.0)
    stored_job(ports, "new", created_at=2.0)
    stored_job(ports, "bobs", user_id="bob")
    list_jobs(ports, ALICE, 10)
    (listing,) = ports.pusher.messages(CONN)
    assert [j["job_id"] for j in listing["jobs"]] == ["new", "old"]
    assert all(j["outputs"] == [] for j in listing["jobs"])
