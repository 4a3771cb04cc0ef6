"""Where node schemas come from per executor: live /object_info for ComfyUI (cached per user and
address, TTL, refreshed once for an unknown class), stored snapshots per RunPod endpoint, the
bundled core snapshot as the fallback; and the S3 store behind them."""

from __future__ import annotations

import gzip
import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from comfyroute.aws.object_info import S3SchemaStore
from comfyroute.conversion.object_info import bundled_object_info, snapshot
from comfyroute.executors.base import ExecutorUnavailable
from comfyroute.protocol import ExecutorKind
from comfyroute.schemas import (
    ObjectInfoSource,
    ObjectInfoUnavailable,
    StoredSchemas,
    comfyui_key,
    editor_classes,
    runpod_key,
)

EMPTY_IMAGE = {"input": {"required": {"width": ["INT", {"default": 512}]}}, "output": ["IMAGE"]}
CUSTOM = {"input": {"required": {}}, "output": ["IMAGE"]}


class MemoryStore:
    def __init__(self) -> None:
        self.objects: dict[str, StoredSchemas] = {}
        self.gets = 0
        self.fail_puts = False

    def get(self, key: str) -> StoredSchemas | None:
        self.gets += 1
        return self.objects.get(key)

    def put(self, key: str, data: bytes) -> None:
        if self.fail_puts:
            raise RuntimeError("S3 is down")
        self.objects[key] = StoredSchemas(data, CLOCK[0])


CLOCK = [1000.0]


class Server:
    """A ComfyUI executor's schema side: what /object_info answers, and how often it was asked."""

    def __init__(self, classes: dict[str, Any], base_url: str = "http://127.0.0.1:8188") -> None:
        self.classes = classes
        self._base = base_url
        self.fetches = 0
        self.down = False

    @property
    def base_url(self) -> str:
        return self._base

    def fetch_object_info(self) -> bytes:
        if self.down:
            raise ExecutorUnavailable("ComfyUI at http://127.0.0.1:8188 could not be reached for GET /object_info")
        self.fetches += 1
        return json.dumps(self.classes).encode()


def source(store: MemoryStore, server: Any, ttl: float = 3600) -> ObjectInfoSource:
    return ObjectInfoSource(store, lambda kind, user, endpoint: server, ttl_seconds=ttl, clock=lambda: CLOCK[0])


@pytest.fixture(autouse=True)
def _clock() -> None:
    CLOCK[0] = 1000.0


def test_comfyui_fetches_live_then_caches_in_the_store_per_user_and_address() -> None:
    store, server = MemoryStore(), Server({"EmptyImage": EMPTY_IMAGE})
    info = source(store, server).get(ExecutorKind.LOCAL, "u1", None, {"EmptyImage"})
    assert "EmptyImage" in info
    assert server.fetches == 1
    key = comfyui_key("u1", server.base_url)
    assert json.loads(gzip.decompress(store.objects[key].data)) == {"EmptyImage": EMPTY_IMAGE}
    # A new process (a cold Lambda) finds the cached copy and does not ask ComfyUI again.
    again = source(store, server).get(ExecutorKind.LOCAL, "u1", None, {"EmptyImage"})
    assert "EmptyImage" in again
    assert server.fetches == 1
    # Another address or another user is another cache entry.
    assert comfyui_key("u1", "http://other:8188") != key
    assert comfyui_key("u2", server.base_url) != key


def test_a_warm_process_answers_from_memory_without_reading_the_store() -> None:
    store, server = MemoryStore(), Server({"EmptyImage": EMPTY_IMAGE})
    src = source(store, server)
    src.get(ExecutorKind.LOCAL, "u1", None, {"EmptyImage"})
    reads = store.gets
    src.get(ExecutorKind.LOCAL, "u1", None, {"EmptyImage"})
    assert store.gets == reads
    assert server.fetches == 1


def test_an_expired_copy_is_fetched_again() -> None:
    store, server = MemoryStore(), Server({"EmptyImage": EMPTY_IMAGE})
    src = source(store, server, ttl=60)
    src.get(ExecutorKind.LOCAL, "u1", None, {"EmptyImage"})
    CLOCK[0] += 61
    src.get(ExecutorKind.LOCAL, "u1", None, {"EmptyImage"})
    assert server.fetches == 2


def test_a_class_the_cached_copy_lacks_fetches_once_more() -> None:
    store, server = MemoryStore(), Server({"EmptyImage": EMPTY_IMAGE})
    src = source(store, server)
    src.get(ExecutorKind.LOCAL, "u1", None, {"EmptyImage"})
    server.classes = {"EmptyImage": EMPTY_IMAGE, "MyCustomNode": CUSTOM}  # installed since
    CLOCK[0] += 30
    info = src.get(ExecutorKind.LOCAL, "u1", None, {"EmptyImage", "MyCustomNode"})
    assert "MyCustomNode" in info
    assert server.fetches == 2
    # Found now: no more fetches for it.
    src.get(ExecutorKind.LOCAL, "u1", None, {"MyCustomNode"})
    assert server.fetches == 2


def test_a_class_nobody_has_does_not_fetch_on_every_job() -> None:
    store, server = MemoryStore(), Server({"EmptyImage": EMPTY_IMAGE})
    src = source(store, server)
    src.get(ExecutorKind.LOCAL, "u1", None, {"NoSuchNode"})  # nothing cached: one fetch
    src.get(ExecutorKind.LOCAL, "u1", None, {"NoSuchNode"})  # just fetched: not again
    assert server.fetches == 1


def test_comfyui_down_uses_a_stale_copy_and_without_one_says_why() -> None:
    store, server = MemoryStore(), Server({"EmptyImage": EMPTY_IMAGE})
    source(store, server, ttl=60).get(ExecutorKind.LOCAL, "u1", None, set())
    CLOCK[0] += 120
    server.down = True
    assert "EmptyImage" in source(store, server, ttl=60).get(ExecutorKind.LOCAL, "u1", None, set())
    with pytest.raises(ObjectInfoUnavailable, match=r"GET /object_info.*could not be reached"):
        source(MemoryStore(), server).get(ExecutorKind.LOCAL, "u1", None, set())


def test_a_store_that_fails_does_not_fail_the_job() -> None:
    store, server = MemoryStore(), Server({"EmptyImage": EMPTY_IMAGE})
    store.fail_puts = True
    assert "EmptyImage" in source(store, server).get(ExecutorKind.LOCAL, "u1", None, set())


def test_not_json_from_comfyui_is_unavailable_not_a_crash() -> None:
    class Broken(Server):
        def fetch_object_info(self) -> bytes:
            return b"[1, 2]"

    with pytest.raises(ObjectInfoUnavailable, match="not usable|not an object"):
        source(MemoryStore(), Broken({})).get(ExecutorKind.LOCAL, "u1", None, set())


def test_runpod_uses_the_endpoints_snapshot_else_the_bundled_one() -> None:
    store = MemoryStore()
    src = source(store, None)
    bundled = src.get(ExecutorKind.RUNPOD, "u1", "ep1", {"KSampler"})
    assert bundled is bundled_object_info()
    assert bundled.comfyui_version == "0.3.64"
    data = gzip.compress(json.dumps(snapshot({"MyCustomNode": CUSTOM}, comfyui_version="0.3.70")).encode())
    store.objects[runpod_key("u1", "ep1")] = StoredSchemas(data, CLOCK[0])
    CLOCK[0] += 61  # the snapshot is looked at again within a minute of a push
    stored = src.get(ExecutorKind.RUNPOD, "u1", "ep1", {"MyCustomNode"})
    assert "MyCustomNode" in stored
    assert stored.comfyui_version == "0.3.70"
    # Per endpoint and per user.
    assert src.get(ExecutorKind.RUNPOD, "u1", "ep2", set()) is bundled_object_info()
    assert src.get(ExecutorKind.RUNPOD, "u2", "ep1", set()) is bundled_object_info()


def test_keys_keep_user_ids_inside_their_folder() -> None:
    assert runpod_key("a/../b", "ep1") == "object-info/runpod/a%2F..%2Fb/ep1.json.gz"
    assert comfyui_key("u", "http://x:1").startswith("object-info/comfyui/u/")


def test_editor_classes_skip_frontend_nodes_subgraph_instances_and_muted_nodes() -> None:
    workflow = {
        "nodes": [
            {"id": 1, "type": "EmptyImage"},
            {"id": 2, "type": "Reroute"},
            {"id": 3, "type": "Note"},
            {"id": 4, "type": "sub-1"},
            {"id": 5, "type": "NoSuchNode", "mode": 2},
            {"id": 6, "type": "T2IAdapterLoader"},
        ],
        "links": [],
        "definitions": {"subgraphs": [{"id": "sub-1", "nodes": [{"id": 1, "type": "ImageInvert"}]}]},
    }
    assert editor_classes(workflow) == {"EmptyImage", "ImageInvert", "ControlNetLoader"}


@mock_aws
def test_s3_store_round_trip_and_missing_key() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="outputs")
    store = S3SchemaStore("outputs", client=s3)
    assert store.get("object-info/runpod/u/ep.json.gz") is None
    store.put("object-info/runpod/u/ep.json.gz", b"\x1f\x8bdata")
    got = store.get("object-info/runpod/u/ep.json.gz")
    assert got is not None
    assert got.data == b"\x1f\x8bdata"
    assert got.stored_at > 1e9
