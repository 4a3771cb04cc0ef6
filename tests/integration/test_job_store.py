"""The jobs table (DynamoDB under moto) and its in-memory double answer every JobChange alike,
so the unit tests of the job rules hold for the deployed store too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from support.memory import MemoryJobs

from comfyroute.executors.base import OutputFile, Progress
from comfyroute.jobs.record import ACTIVE, JobChange, JobNotFound, JobRecord
from comfyroute.ports import JobStore
from comfyroute.protocol import ExecutorKind, JobStatus


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest, plan: Any) -> Iterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobs()
        return
    from moto import mock_aws

    from comfyroute.aws import clients
    from comfyroute.aws.jobs import DynamoJobs

    with mock_aws():
        clients.reset_clients()
        table = plan.table("JobsTable")
        boto3.client("dynamodb", region_name="us-east-1").create_table(**table.create_args)
        yield DynamoJobs(table.name)
        clients.reset_clients()


def job(job_id: str = "j1", **fields: Any) -> JobRecord:
    now = time.time()
    values: dict[str, Any] = {
        "job_id": job_id,
        "user_id": "alice",
        "connection_id": "c1",
        "executor": ExecutorKind.LOCAL,
        "created_at": now,
        "updated_at": now,
        "deadline": now + 60,
    }
    return JobRecord.model_validate({**values, **fields})


def test_insert_answers_the_stored_record_for_a_taken_id(store: JobStore) -> None:
    first = store.insert(job(node_classes={"2": "SaveImage"}))
    assert first.applied
    again = store.insert(job(user_id="bob"))
    assert not again.applied
    assert (again.job.user_id, again.job.node_classes) == ("alice", {"2": "SaveImage"})


def test_an_applied_change_answers_the_new_record(store: JobStore) -> None:
    store.insert(job(message="old", queue_position=2))
    progress = Progress(node_id="3", value=1.5, max=4)
    out = store.apply(
        JobChange(
            "j1",
            {"status": JobStatus.RUNNING, "progress": progress, "started_at": 12.25},
            remove={"message", "queue_position"},
            only_in=ACTIVE,
        )
    )
    assert out.applied
    assert (out.job.status, out.job.progress, out.job.started_at) == (JobStatus.RUNNING, progress, 12.25)
    assert (out.job.message, out.job.queue_position) == (None, None)
    assert store.get("j1") == out.job


def test_a_refused_change_answers_the_record_as_it_stands(store: JobStore) -> None:
    store.insert(job(status=JobStatus.CANCELLED, message="cancelled by the user"))
    out = store.apply(JobChange("j1", {"status": JobStatus.COMPLETED}, only_in=ACTIVE))
    assert not out.applied
    assert (out.job.status, out.job.message) == (JobStatus.CANCELLED, "cancelled by the user")


def test_only_unset_refuses_a_change_once_the_field_is_set(store: JobStore) -> None:
    store.insert(job())
    stranded = JobChange("j1", {"status": JobStatus.FAILED}, only_in=ACTIVE, only_unset={"execution_arn"})
    store.apply(JobChange("j1", {"execution_arn": "arn:x"}))
    refused = store.apply(stranded)
    assert (refused.applied, refused.job.status) == (False, JobStatus.QUEUED)
    store.insert(job("j2"))
    assert store.apply(JobChange("j2", {"status": JobStatus.FAILED}, only_unset={"execution_arn"})).applied


def test_outputs_round_trip_without_their_bytes(store: JobStore) -> None:
    store.insert(job())
    files = [
        OutputFile(
            node_id="3",
            node_name="SaveImage",
            output_name="images",
            kind="image",
            filename="a.png",
            content_type="image/png",
            data=b"abc",
            key="jobs/j1/000-3-a.png",
        )
    ]
    out = store.apply(JobChange("j1", {"outputs": files, "status": JobStatus.COMPLETED}))
    (stored,) = out.job.outputs
    assert (stored.size, stored.key, stored.data, stored.kind) == (3, "jobs/j1/000-3-a.png", None, "image")
    assert store.get("j1") == out.job


def test_a_change_to_a_missing_job_raises_job_not_found(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.apply(JobChange("nope", {"message": "x"}, only_in=ACTIVE))


def test_list_by_user_is_newest_first_and_the_users_own(store: JobStore) -> None:
    store.insert(job("old", created_at=1.0))
    store.insert(job("new", created_at=2.0))
    store.insert(job("bobs", user_id="bob", created_at=3.0))
    assert [j.job_id for j in store.list_by_user("alice", 10)] == ["new", "old"]
    assert [j.job_id for j in store.list_by_user("alice", 1)] == ["new"]


def test_client_chosen_node_ids_are_stored_as_text_whatever_they_are(store: JobStore) -> None:
    # An empty map key is refused by DynamoDB; as JSON text it is only data.
    classes = {"": "SaveImage", "a.b": "X", "9" * 50: "Y"}
    assert store.insert(job(node_classes=classes)).applied
    stored = store.get("j1")
    assert stored is not None
    assert stored.node_classes == classes
    assert [j.job_id for j in store.list_by_user("alice", 10)] == ["j1"]


def test_one_unreadable_record_never_breaks_the_listing_of_its_users_jobs(plan: Any) -> None:
    from moto import mock_aws

    from comfyroute.aws import clients
    from comfyroute.aws.jobs import DynamoJobs

    with mock_aws():
        clients.reset_clients()
        table = plan.table("JobsTable")
        boto3.client("dynamodb", region_name="us-east-1").create_table(**table.create_args)
        jobs = DynamoJobs(table.name)
        jobs.insert(job("good", created_at=2.0))
        # As a bug (or an older version) might have left it: no executor, a status we do not know.
        jobs.table.put_item(Item={"job_id": "bad", "user_id": "alice", "created_at": 1, "status": "weird"})
        listed = jobs.list_by_user("alice", 10)
        clients.reset_clients()
    assert [(j.job_id, j.status) for j in listed] == [("good", JobStatus.QUEUED), ("bad", JobStatus.FAILED)]
    assert listed[1].error == "this job's record could not be read"
