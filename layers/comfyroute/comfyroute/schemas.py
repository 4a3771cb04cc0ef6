"""Where a job's node schemas (ComfyUI's ``GET /object_info``) come from, per executor.

Editor workflows (and nodetool graphs with ``_comfy_widgets``) are converted with the schemas of
the ComfyUI that runs them:

- ``local`` (a ComfyUI through a tunnel): fetched live from its ``/object_info`` with the user's
  headers, and cached in S3 per user and address (``object-info/comfyui/{user}/{address hash}.json.gz``)
  for ``OBJECT_INFO_TTL_SECONDS``. A workflow naming a class the cached copy lacks fetches it
  again at once (a custom node installed since), at most every ``REFRESH_AFTER_SECONDS``.
- ``runpod`` (serverless: no ``/object_info``): the snapshot the user stored for the endpoint
  (``object-info/runpod/{user}/{endpoint}.json.gz``, ``comfyroute object-info push``), else the
  bundled core snapshot (ComfyUI 0.3.64, no custom nodes).

A parsed copy is also kept in the process (a warm Lambda container) for as long as it is fresh,
so a warm run_job reads S3 only when the copy has aged or lacks a class.
"""

from __future__ import annotations

import gzip
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple, Protocol, cast, runtime_checkable
from urllib.parse import quote

from aws_lambda_powertools import Logger

from comfyroute.conversion.object_info import ObjectInfo, bundled_object_info
from comfyroute.conversion.workflow import RENAMED_CLASSES
from comfyroute.credentials import CredentialsError
from comfyroute.executors.base import ExecutorError
from comfyroute.protocol import ExecutorKind

logger = Logger(child=True)

PREFIX = "object-info"
# A stored RunPod snapshot is looked at again after this long (a new push shows within it).
SNAPSHOT_RECHECK_SECONDS = 60.0
# A class missing from a cached copy fetches it again, but not more often than this.
REFRESH_AFTER_SECONDS = 10.0
# Parsed copies kept per process; each is a few MB with custom nodes.
MEMO_ENTRIES = 4


class ObjectInfoUnavailable(Exception):
    """The schemas could not be had; ``str()`` is safe to show the user."""


class StoredSchemas(NamedTuple):
    data: bytes  # gzipped JSON: /object_info as fetched, or a snapshot ({comfyui_version, object_info})
    stored_at: float


class SchemaStore(Protocol):
    """Stored schemas by key (``ports``: S3 under the outputs bucket's ``object-info/``)."""

    def get(self, key: str) -> StoredSchemas | None: ...

    def put(self, key: str, data: bytes) -> None: ...


# Builds the executor a user's jobs of a kind run on (``ports.ExecutorFactory``).
ExecutorFactory = Callable[[ExecutorKind, str, "str | None"], object]


@runtime_checkable
class SchemaServer(Protocol):
    """An executor that serves its own schemas (the ComfyUI executor)."""

    @property
    def base_url(self) -> str: ...

    def fetch_object_info(self) -> bytes: ...


def _user(user_id: str) -> str:
    return quote(user_id, safe="")


def comfyui_key(user_id: str, base_url: str) -> str:
    # The address is hashed: it may hold a tunnel's name the key listing need not show.
    digest = hashlib.sha256(base_url.encode()).hexdigest()[:24]
    return f"{PREFIX}/comfyui/{_user(user_id)}/{digest}.json.gz"


def runpod_key(user_id: str, endpoint_id: str) -> str:
    return f"{PREFIX}/runpod/{_user(user_id)}/{quote(endpoint_id, safe='')}.json.gz"


def pack(raw_json: bytes) -> bytes:
    # Level 1: /object_info with custom nodes is megabytes; the fast level keeps most of the gain.
    return gzip.compress(raw_json, compresslevel=1)


class _Memo(NamedTuple):
    info: ObjectInfo
    stored_at: float
    checked_at: float


class ObjectInfoSource:
    """``ports.ObjectInfoSource``: the schemas a job of ``kind`` is converted with."""

    def __init__(
        self,
        store: SchemaStore,
        executors: ExecutorFactory,
        *,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.executors = executors
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._memo: OrderedDict[str, _Memo] = OrderedDict()

    def get(self, kind: ExecutorKind, user_id: str, endpoint_id: str | None, classes: Collection[str]) -> ObjectInfo:
        if kind is ExecutorKind.RUNPOD:
            return self._runpod(user_id, endpoint_id or "")
        return self._comfyui(user_id, set(classes))

    # ------------------------------------------------------------------ runpod

    def _runpod(self, user_id: str, endpoint_id: str) -> ObjectInfo:
        key = runpod_key(user_id, endpoint_id)
        now = self.clock()
        memo = self._memo.get(key)
        if memo is not None and now - memo.checked_at < SNAPSHOT_RECHECK_SECONDS:
            return memo.info
        stored = self._read(key)
        if stored is None:
            return bundled_object_info()
        if memo is not None and memo.stored_at == stored.stored_at:
            info = memo.info
        else:
            info = self._parse(stored.data, f"the snapshot stored for RunPod endpoint {endpoint_id}")
        self._remember(key, _Memo(info, stored.stored_at, now))
        return info

    # ------------------------------------------------------------------ comfyui

    def _comfyui(self, user_id: str, classes: set[str]) -> ObjectInfo:
        try:
            found = self.executors(ExecutorKind.LOCAL, user_id, None)
        except (ExecutorError, CredentialsError, ValueError) as exc:
            raise ObjectInfoUnavailable(f"the local executor cannot be reached: {exc}") from None
        # Duck-typed, not isinstance: a Protocol check looks members up statically, and the
        # executor comes wrapped (executors.scrubbed) with the ComfyUI one's members forwarded.
        if not (hasattr(found, "fetch_object_info") and hasattr(found, "base_url")):
            raise ObjectInfoUnavailable("the local executor serves no /object_info")
        executor = cast(SchemaServer, found)
        key = comfyui_key(user_id, executor.base_url)
        now = self.clock()
        cached = self._memo.get(key)
        if cached is None or not self._fresh(cached.stored_at, now):
            stored = self._read(key)
            if stored is not None and (cached is None or stored.stored_at != cached.stored_at):
                cached = _Memo(self._parse(stored.data, "the cached /object_info"), stored.stored_at, now)
        if cached is not None and self._fresh(cached.stored_at, now):
            missing = classes - set(cached.info)
            if not missing or now - cached.stored_at < REFRESH_AFTER_SECONDS:
                self._remember(key, cached)
                return cached.info
            logger.info("object_info lacks classes; fetching it again", extra={"missing": sorted(missing)[:10]})
        try:
            raw = executor.fetch_object_info()
        except ExecutorError as exc:
            if cached is not None:
                # A stale copy converts what it knows; the conversion names any class it lacks.
                logger.warning("using a stale object_info: ComfyUI did not serve a new one", extra={"error": str(exc)})
                return cached.info
            raise ObjectInfoUnavailable(f"could not read ComfyUI's node schemas (GET /object_info): {exc}") from None
        info = self._parse(raw, "ComfyUI's /object_info")
        stored_at = self.clock()
        try:
            self.store.put(key, pack(raw))
        except Exception:  # the cache is an optimisation: a job never fails on it
            logger.exception("could not cache object_info")
        self._remember(key, _Memo(info, stored_at, stored_at))
        return info

    # ------------------------------------------------------------------ helpers

    def _fresh(self, stored_at: float, now: float) -> bool:
        return now - stored_at < self.ttl_seconds

    def _read(self, key: str) -> StoredSchemas | None:
        try:
            return self.store.get(key)
        except Exception:
            logger.exception("could not read stored object_info")
            return None

    @staticmethod
    def _parse(data: bytes, what: str) -> ObjectInfo:
        try:
            info = ObjectInfo.from_bytes(data, source=what)
        except (ValueError, OSError, EOFError) as exc:  # JSON, gzip and shape errors
            raise ObjectInfoUnavailable(f"{what} is not usable: {str(exc)[:200]}") from None
        if not all(isinstance(entry, Mapping) for entry in _first(info.raw)):
            raise ObjectInfoUnavailable(f"{what} is not an object of node classes")
        return info

    def _remember(self, key: str, memo: _Memo) -> None:
        self._memo[key] = memo
        self._memo.move_to_end(key)
        while len(self._memo) > MEMO_ENTRIES:
            self._memo.popitem(last=False)


def _first(raw: Mapping[str, Any], n: int = 8) -> list[Any]:
    return [value for _, value in zip(range(n), raw.values(), strict=False)]


# --------------------------------------------------------------------------- which classes a workflow names

# Frontend-only nodes: never in /object_info, never sent.
_VIRTUAL = frozenset({"Reroute", "PrimitiveNode", "Note", "MarkdownNote", "WEBCAM", "LOAD_3D", "LOAD_3D_ANIMATION"})
_MUTED = 2


def editor_classes(workflow: Mapping[str, Any]) -> set[str]:
    """The node classes an editor workflow needs schemas for: every node type but frontend-only
    nodes, subgraph instances and muted nodes (the frontend leaves those out)."""
    graphs: list[Any] = [workflow]
    definitions = workflow.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
    if isinstance(subgraphs, list):
        graphs += subgraphs
    subgraph_ids = {g.get("id") for g in graphs[1:] if isinstance(g, Mapping)}
    found: set[str] = set()
    for graph in graphs:
        nodes = graph.get("nodes") if isinstance(graph, Mapping) else None
        for node in nodes if isinstance(nodes, list) else ():
            if not isinstance(node, Mapping) or node.get("mode") == _MUTED:
                continue
            kind = node.get("type")
            if isinstance(kind, str) and kind not in _VIRTUAL and kind not in subgraph_ids:
                found.add(RENAMED_CLASSES.get(kind, kind))
    return found
