"""The job messages table (DynamoDB under moto, built from template.yaml) and its in-memory
double number and read a job's messages alike; the DynamoDB one also the way the template
keys and expires them. And $connect's attach, owner and status checked in one write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from support.memory import MemoryJobAttach, MemoryJobs

from comfyroute.jobs.record import JobRecord
from comfyroute.ports import JobAttach, MessageLog
from comfyroute.protocol import ExecutorKind, JobStatus


@pytest.fixture(params=["dynamodb", "memory"])
def log(request: pytest.FixtureRequest, plan: Any) -> Iterator[MessageLog]:
    if request.param == "memory":
        from support.memory import MemoryMessageLog

        yield MemoryMessageLog()
        return
    from moto import mock_aws

    from comfyroute.aws import clients
    from comfyroute.aws.messagelog import DynamoMessageLog

    with mock_aws():
        clients.reset_clients()
        table = plan.table("JobMessagesTable")
        boto3.client("dynamodb", region_name="us-east-1").create_table(**table.create_args)
        yield DynamoMessageLog(table.name)
        clients.reset_clients()


def test_numbers_run_per_job_across_batches(log: MessageLog) -> None:
    assert log.last_seq("a") == 0
    assert log.append("a", [{"n": 1}, {"n": 2}], ttl=2_000_000_000) == [1, 2]
    assert log.append("b", [{"n": 1}], ttl=None) == [1]
    assert log.append("a", [{"n": 3}], ttl=2_000_000_000) == [3]
    assert log.append("a", [], ttl=None) == []
    assert log.last_seq("a") == 3
    assert log.read("a", 0, 3, limit=10) == [(1, {"n": 1}), (2, {"n": 2}), (3, {"n": 3})]
    assert log.read("a", 1, 2, limit=10) == [(2, {"n": 2})]
    assert log.read("a", 3, 3, limit=10) == []
    assert log.read("a", 0, 3, limit=2) == [(1, {"n": 1}), (2, {"n": 2})]


def test_messages_keep_their_values_exactly(log: MessageLog) -> None:
    message = {"type": "node_progress", "progress": 0.1, "total": 3, "nested": {"x": [1, None, "é"]}}
    log.append("a", [message], ttl=None)
    assert log.read("a", 0, 1, limit=1) == [(1, message)]


def test_the_dynamodb_items_carry_the_jobs_ttl(plan: Any) -> None:
    from moto import mock_aws

    from comfyroute.aws import clients
    from comfyroute.aws.messagelog import DynamoMessageLog

    with mock_aws():
        clients.reset_clients()
        table = plan.table("JobMessagesTable")
        boto3.client("dynamodb", region_name="us-east-1").create_table(**table.create_args)
        DynamoMessageLog(table.name).append("a", [{"n": 1}], ttl=1_900_000_000)
        items = boto3.resource("dynamodb", region_name="us-east-1").Table(table.name).scan()["Items"]
        assert sorted((int(i["job_seq"]), int(i["ttl"])) for i in items) == [(0, 1_900_000_000), (1, 1_900_000_000)]
        clients.reset_clients()


# --------------------------------------------------------------------------- $connect's attach


def record(job_id: str, user: str, status: JobStatus) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        user_id=user,
        connection_id="old",
        executor=ExecutorKind.LOCAL,
        status=status,
        created_at=1.0,
        updated_at=1.0,
        deadline=9e9,
    )


@pytest.fixture(params=["dynamodb", "memory"])
def attach(request: pytest.FixtureRequest, plan: Any) -> Iterator[tuple[JobAttach, Any]]:
    jobs = [record("mine", "alice", JobStatus.RUNNING), record("done", "alice", JobStatus.COMPLETED)]
    jobs.append(record("bobs", "bob", JobStatus.RUNNING))
    if request.param == "memory":
        store = MemoryJobs()
        for job in jobs:
            store.insert(job)
        yield MemoryJobAttach(store), store.get
        return
    from moto import mock_aws

    from comfyroute.aws import clients
    from comfyroute.aws.attach import DynamoJobAttach
    from comfyroute.aws.jobs import DynamoJobs

    with mock_aws():
        clients.reset_clients()
        table = plan.table("JobsTable")
        boto3.client("dynamodb", region_name="us-east-1").create_table(**table.create_args)
        dynamo = DynamoJobs(table.name)
        for job in jobs:
            dynamo.insert(job)
        yield DynamoJobAttach(table.name), dynamo.get
        clients.reset_clients()


def test_attach_moves_only_the_users_active_job(attach: tuple[JobAttach, Any]) -> None:
    port, get = attach
    assert port.attach("mine", "alice", "new") is True
    assert get("mine").connection_id == "new"
    assert port.attach("bobs", "alice", "new") is False
    assert get("bobs").connection_id == "old"
    assert port.attach("done", "alice", "new") is False
    assert get("done").connection_id == "old"
    assert port.attach("missing", "alice", "new") is False
