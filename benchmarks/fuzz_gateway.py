"""Generated frames over a real WebSocket against `comfyroute dev`: does every frame get an answer,
and is it never `internal`?

Starts the dev stack in this process on loopback (the real template, handlers and state
machine on moto) with the fake ComfyUI from tests/fakes, then sends seeded frames — random
bytes and text, JSON values, near-valid commands of every kind with hostile fields, long
numbers, deep nesting, lone surrogates, empty keys, mis-shaped prompts, saved workflows with bad
settings, frames close to 128 KB — each on a fresh connection, so the first message back is
that frame's answer. Counts, per kind of frame and in all:

* sent, answered (a message came back), internal (`code: internal` or the gateway's
  `Internal server error`), unanswered (nothing within --timeout), closed (the socket closed
  without a message);
* for each internal answer, the handler exception behind it (from the handlers' log) and the
  frame that caused it, once per distinct exception site.

Not a test: it prints the table (and --report FILE writes every internal/unanswered frame as
JSON lines).

    .venv/bin/python benchmarks/fuzz_gateway.py [--frames 1200] [--seed 9]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import string
import sys
import threading
import time
import traceback
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

# Loopback ports of this helper's range; --port / --comfy-port move them.
DEFAULT_PORT = 25110
DEFAULT_COMFY_PORT = 25111
COMMANDS = ("run_job", "cancel_job", "get_job", "list_jobs", "save_workflow", "ping")
EXECUTORS = ("local", "runpod")


# --------------------------------------------------------------------------- frames


class Frames:
    """Seeded frame generator: ``next()`` gives (kind, frame) with frame str (text) or bytes (binary)."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.saved: list[str] = []  # workflow ids saved by earlier frames (for run_job by id)
        self.job_ids: list[str] = []
        kinds: list[tuple[str, int, Callable[[], str | bytes]]] = [
            ("binary", 4, self.binary),
            ("text", 6, self.text),
            ("json_value", 6, lambda: self.dumps(self.value(3))),
            ("run_job", 18, self.run_job),
            ("save_workflow", 8, self.save_workflow),
            ("job_ref", 8, self.job_ref),
            ("list_jobs", 5, self.list_jobs),
            ("ping", 3, self.ping),
            ("long_number", 8, self.long_number),
            ("deep_nesting", 6, self.deep_nesting),
            ("surrogate", 6, self.surrogate),
            ("empty_key", 6, self.empty_key),
            ("mis_shaped", 10, self.mis_shaped),
            ("saved_workflow_as_graph", 2, self.saved_workflow_as_graph),
            ("large", 2, self.large),
            ("truncated", 4, self.truncated),
        ]
        self.kinds = kinds
        self._weights = [w for _, w, _ in kinds]

    def next(self) -> tuple[str, str | bytes]:
        kind, _, make = self.r.choices(self.kinds, weights=self._weights)[0]
        return kind, make()

    # -- building blocks ------------------------------------------------------------------

    @staticmethod
    def dumps(value: Any) -> str:
        return json.dumps(value, allow_nan=True)

    def word(self, n: int = 8) -> str:
        return "".join(self.r.choice(string.ascii_letters + string.digits + "_-") for _ in range(self.r.randint(1, n)))

    def scalar(self) -> Any:
        return self.r.choice(
            [
                None,
                True,
                False,
                self.r.randint(-(10**6), 10**6),
                self.r.random() * 1000,
                self.word(),
                "",
                self.r.randint(-(10**45), 10**45),
                self.r.choice([1e308, -1e126, 1e-200, float("inf"), float("nan")]),
                "".join(chr(self.r.randint(32, 0x2FFF)) for _ in range(self.r.randint(0, 6))),
            ]
        )

    def value(self, depth: int) -> Any:
        if depth <= 0 or self.r.random() < 0.4:
            return self.scalar()
        if self.r.random() < 0.5:
            return [self.value(depth - 1) for _ in range(self.r.randint(0, 3))]
        return {self.key(): self.value(depth - 1) for _ in range(self.r.randint(0, 3))}

    def key(self) -> str:
        return self.r.choice(["", "1", "id", "type", "inputs", "class_type", "seed", self.word(5)])

    def maybe(self, good: Any, bad: Callable[[], Any], p_bad: float = 0.2) -> Any:
        return bad() if self.r.random() < p_bad else good

    def job_id(self) -> str:
        job_id = f"fz-{self.r.getrandbits(40):010x}"
        self.job_ids.append(job_id)
        return job_id

    def prompt(self) -> dict[str, Any]:
        width = self.maybe(self.r.choice([8, 16]), self.scalar)
        return {
            "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "fz"}},
        }

    def graph(self) -> dict[str, Any]:
        nodes: list[dict[str, Any]] = [
            {"id": "1", "type": "comfy.EmptyImage", "data": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            {"id": "2", "type": "comfy.SaveImage", "data": {"filename_prefix": "fz"}},
        ]
        edges: list[dict[str, Any]] = [
            {"source": "1", "sourceHandle": "output_0", "target": "2", "targetHandle": "images"}
        ]
        if self.r.random() < 0.3:
            node = self.r.choice(nodes)
            node[self.r.choice(["id", "type", "data", "properties"])] = self.value(2)
        if self.r.random() < 0.3:
            edges[0][self.r.choice(["source", "target", "sourceHandle", "targetHandle"])] = self.value(1)
        return {"nodes": nodes, "edges": edges}

    def settings(self) -> Any:
        base: dict[str, Any] = {"comfy_executor": self.maybe(self.r.choice(EXECUTORS), self.scalar, 0.1)}
        if base["comfy_executor"] == "runpod" or self.r.random() < 0.2:
            base["runpod_endpoint_id"] = self.maybe("ep_fuzz", self.scalar)
        if self.r.random() < 0.3:
            base[self.key()] = self.value(2)
        return self.maybe(base, lambda: self.value(2), 0.1)

    # -- kinds ----------------------------------------------------------------------------

    def binary(self) -> bytes:
        if self.r.random() < 0.5:
            return bytes(self.r.getrandbits(8) for _ in range(self.r.randint(0, 200)))
        # msgpack-ish or JSON in a binary frame: API Gateway sends both to $default.
        return self.dumps({"command": self.r.choice(COMMANDS), "data": {}}).encode()

    def text(self) -> str:
        alphabet = string.printable + "\u00e9\u4e2d\U0001f600\x00\x7f"
        return "".join(self.r.choice(alphabet) for _ in range(self.r.randint(0, 200)))

    def run_job(self) -> str:
        data: dict[str, Any] = {}
        source = self.r.choice(["prompt", "graph", "workflow_id"])
        if source == "prompt":
            data["prompt"] = self.prompt()
        elif source == "graph":
            data["graph"] = self.graph()
        else:
            data["workflow_id"] = self.r.choice(self.saved) if self.saved and self.r.random() < 0.7 else self.word()
        if self.r.random() < 0.7:
            data["job_id"] = self.maybe(self.job_id(), self.scalar, 0.1)
        if self.r.random() < 0.5:
            data["settings"] = self.settings()
        if self.r.random() < 0.2:
            data["params"] = self.maybe({"1": {"width": self.scalar()}}, lambda: self.value(2))
        if self.r.random() < 0.05:
            data[self.word()] = self.value(1)
        return self.dumps({"command": "run_job", "data": data})

    def save_workflow(self) -> str:
        workflow_id = self.maybe(f"wf-{self.word(4)}", self.scalar, 0.1)
        data: dict[str, Any] = {"workflow_id": workflow_id}
        if self.r.random() < 0.6:
            data["graph"] = self.graph()
        elif self.r.random() < 0.5:
            data["prompt"] = self.prompt()
        if self.r.random() < 0.7:
            data["settings"] = self.settings()
        if isinstance(workflow_id, str):
            self.saved.append(workflow_id)
        return self.dumps({"command": "save_workflow", "data": data})

    def job_ref(self) -> str:
        job_id = self.r.choice(self.job_ids) if self.job_ids and self.r.random() < 0.7 else self.scalar()
        command = self.r.choice(["get_job", "cancel_job"])
        return self.dumps({"command": command, "data": self.maybe({"job_id": job_id}, lambda: self.value(2), 0.1)})

    def list_jobs(self) -> str:
        data = self.maybe({"limit": self.r.randint(1, 100)}, lambda: {"limit": self.scalar()}, 0.3)
        return self.dumps({"command": "list_jobs", "data": data})

    def ping(self) -> str:
        return self.dumps({"command": "ping", **({"data": self.value(2)} if self.r.random() < 0.3 else {})})

    def long_number(self) -> str:
        digits = self.r.choice([39, 40, 400, 4300, 4301, 6000])
        number = self.r.choice(["", "-"]) + "9" * digits
        place = self.r.choice(["settings", "params", "job_id", "limit"])
        if place == "settings":
            body = {"command": "save_workflow", "data": {"workflow_id": "wf-n", "settings": {"seed": "@N@"}}}
        elif place == "params":
            body = {"command": "run_job", "data": {"prompt": self.prompt(), "params": {"1": {"width": "@N@"}}}}
        elif place == "job_id":
            body = {"command": "get_job", "data": {"job_id": "@N@"}}
        else:
            body = {"command": "list_jobs", "data": {"limit": "@N@"}}
        return self.dumps(body).replace('"@N@"', number)

    def deep_nesting(self) -> str:
        depth = self.r.choice([63, 65, 200, 300, 999, 1500, 3000])
        nested = "[" * depth + "1" + "]" * depth
        place = self.r.choice(["ping", "prompt_input", "settings"])
        if place == "ping":
            return '{"command":"ping","data":' + nested + "}"
        if place == "prompt_input":
            return '{"command":"run_job","data":{"prompt":{"1":{"class_type":"X","inputs":{"v":' + nested + "}}}}}"
        return '{"command":"save_workflow","data":{"workflow_id":"wf-d","settings":{"s":' + nested + "}}}"

    def surrogate(self) -> str:
        s = "a\\u" + format(self.r.randint(0xD800, 0xDFFF), "04x")
        return self.r.choice(
            [
                '{"command":"' + s + '"}',
                '{"command":"get_job","data":{"job_id":"' + s + '"}}',
                '{"command":"run_job","data":{"prompt":{"1":{"class_type":"X","inputs":{"t":"' + s + '"}}}}}',
                '{"command":"save_workflow","data":{"workflow_id":"wf-s","settings":{"t":"' + s + '"}}}',
                '{"command":"run_job","data":{"graph":{"nodes":[{"id":"' + s + '","type":"comfy.X"}]}}}',
            ]
        )

    def empty_key(self) -> str:
        return self.dumps(
            self.r.choice(
                [
                    {"command": "run_job", "data": {"prompt": {"": {"class_type": "EmptyImage", "inputs": {}}}}},
                    {"command": "run_job", "data": {"graph": {"nodes": [{"id": "", "type": "comfy.EmptyImage"}]}}},
                    {"command": "save_workflow", "data": {"workflow_id": "wf-e", "settings": {"": 1}}},
                    {"command": "run_job", "data": {"prompt": self.prompt(), "params": {"": {"width": 1}}}},
                    {"command": "run_job", "data": {"prompt": self.prompt(), "settings": {"": "x"}}},
                ]
            )
        )

    def mis_shaped(self) -> str:
        prompt = self.prompt()
        choice = self.r.randint(0, 9)
        if choice == 0:
            prompt["1"] = self.r.choice(["x", 1, [], None])
        elif choice == 1:
            prompt["1"]["inputs"] = self.r.choice(["x", [1, 2], 3])
        elif choice == 2:
            prompt["2"]["inputs"]["images"] = self.r.choice([["9", 0], ["1"], "1", ["1", "x"], [None, 0]])
        elif choice == 3:
            del prompt["1"]["class_type"]
        elif choice == 4:
            prompt["1"]["inputs"][self.word()] = self.value(3)
        elif choice == 5:
            return self.dumps({"command": "run_job", "data": {"prompt": prompt, "params": {"1": self.scalar()}}})
        elif choice == 6:
            return self.dumps({"command": "run_job", "data": {"graph": {"nodes": [self.value(2)], "edges": []}}})
        elif choice == 7:
            return self.dumps({"command": "run_job", "data": {"graph": {"nodes": [], "edges": [self.value(2)]}}})
        elif choice == 8:
            return self.dumps(
                {"command": "run_job", "data": {"prompt": {"1": {"class_type": self.word(), "inputs": {}}}}}
            )
        else:
            return self.dumps(
                {"command": "run_job", "data": {"prompt": prompt, "settings": {"comfy_executor": "runpod"}}}
            )
        return self.dumps({"command": "run_job", "data": {"prompt": prompt}})

    def saved_workflow_as_graph(self) -> str:
        saved = json.loads((ROOT / "examples" / "empty_invert_save.json").read_text(encoding="utf-8"))
        return self.dumps({"command": "run_job", "data": {self.r.choice(["graph", "prompt"]): saved}})

    def large(self) -> str:
        # Up to API Gateway's 128 KB frame limit (the frame itself ~300 bytes more); past it the
        # gateway closes the socket with 1009, as API Gateway does.
        size = self.r.choice([60_000, 120_000, 130_500])
        return self.dumps({"command": "run_job", "data": {"prompt": self.prompt(), "params": {"1": {"t": "x" * size}}}})

    def truncated(self) -> str:
        text = self.run_job()
        cut = self.r.randint(0, len(text))
        return text[:cut] + self.r.choice(["", "}", "]", ",", '"', "\\", "\\ud800", "1e999"]) + text[cut:]


# --------------------------------------------------------------------------- the run


class HandlerErrors(logging.Handler):
    """The exceptions handlers log while a frame is in flight (one frame at a time), and the
    exceptions state machine tasks (poll, notify) raise in between."""

    def __init__(self, level: int = logging.ERROR) -> None:
        super().__init__(level=level)
        self._records_lock = threading.Lock()
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR and not record.getMessage().startswith("function "):
            return
        prefix = ""
        if record.levelno < logging.ERROR:  # "function NAME raised TYPE" from the in-process Lambda
            prefix = record.getMessage().split(" raised ")[0].removeprefix("function ").rsplit("-", 1)[-1] + ": "
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            tb = traceback.extract_tb(record.exc_info[2])
            site = next((f for f in reversed(tb) if "/comfyroute/" in f.filename), tb[-1] if tb else None)
            where = f"{Path(site.filename).name}:{site.lineno} {site.name}" if site else "?"
            text = f"{prefix}{type(exc).__name__} at {where}: {str(exc)[:160]}"
        else:
            text = prefix + record.getMessage()[:200]
        with self._records_lock:
            self.records.append(text)

    def take(self) -> list[str]:
        with self._records_lock:
            taken, self.records = self.records, []
        return taken


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    internal: int = 0
    unanswered: int = 0
    closed: int = 0
    replies: Counter[str] = field(default_factory=Counter)


def reply_kind(message: dict[str, Any]) -> str:
    if message.get("type") == "job_update":
        return f"job_update {message.get('status')}"
    return str(message.get("code") or message.get("type"))


def audit_jobs(stack: Any) -> Counter[str]:
    """Every job the run created: terminal or not, and with what error (first words)."""
    found: Counter[str] = Counter()
    pages = stack.client("dynamodb").get_paginator("scan").paginate(TableName=stack.env["JOBS_TABLE"])
    for page in pages:
        for item in page["Items"]:
            status = item["status"]["S"]
            # Quoted names (workflow ids, node ids) vary; the kind of error does not.
            error = re.sub(r"'[^']*'", "'…'", item.get("error", {}).get("S", ""))
            found[f"{status}: {error[:70]}" if error else status] += 1
    return found


def is_internal(message: dict[str, Any]) -> bool:
    return message.get("code") == "internal" or message.get("message") == "Internal server error"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--comfy-port", type=int, default=DEFAULT_COMFY_PORT)
    parser.add_argument("--report", type=Path, default=None, help="write internal/unanswered frames here (JSON lines)")
    args = parser.parse_args()

    from fakes import FakeComfyUI

    from comfyroute_tools.dev.stack import DevStack

    logging.getLogger("comfyroute_dev").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    errors = HandlerErrors()
    frames = Frames(args.seed)
    per_kind: dict[str, Tally] = defaultdict(Tally)
    total = Tally()
    sites: dict[str, tuple[str, str, str]] = {}  # exception site -> (kind, first message, first frame)
    site_counts: Counter[str] = Counter()
    # Exceptions logged between frames: the state machine's tasks of jobs accepted earlier.
    background: Counter[str] = Counter()
    report: list[dict[str, Any]] = []
    started = time.monotonic()

    jobs: Counter[str] = Counter()
    with (
        FakeComfyUI(port=args.comfy_port, run_seconds=0.05) as comfy,
        DevStack(
            "127.0.0.1",
            args.port,
            comfyui_addr=comfy.addr,
            handler_log_level="ERROR",
            # Binary frames reach $default (as MessagePack clients need) instead of a 1003 close.
            binary_frames="default_route",
        ) as stack,
    ):
        # The handlers' Powertools logger: capture its exceptions instead of printing JSON.
        service_log = logging.getLogger("comfyroute")
        saved_handlers = service_log.handlers[:]
        service_log.handlers = [errors]
        logging.getLogger("comfyroute_dev.gateway").addHandler(errors)
        # In-process Lambda invocations that raised (state machine tasks) log at debug.
        tasks_log = logging.getLogger("comfyroute_dev")
        tasks_log.setLevel(logging.DEBUG)
        tasks_log.addHandler(errors)
        try:
            for _ in range(args.frames):
                kind, frame = frames.next()
                tally = per_kind[kind]
                background.update(errors.take())
                outcome, reply = send(stack.ws_url, stack.token, frame, args.timeout)
                logged = errors.take()
                for t in (tally, total):
                    t.sent += 1
                    if outcome == "answered":
                        t.answered += 1
                        t.replies[reply_kind(reply)] += 1
                        if is_internal(reply):
                            t.internal += 1
                    elif outcome == "closed":
                        t.closed += 1
                    else:
                        t.unanswered += 1
                if outcome != "answered" or is_internal(reply):
                    shown = frame if isinstance(frame, str) else frame.hex()
                    for line in logged or [f"(nothing logged; the frame was {outcome})"]:
                        site = line.split(": ", 1)[0]  # "Type at file:line function", without the message
                        if site not in sites:
                            sites[site] = (kind, line, shown[:300])
                        site_counts[site] += 1
                    report.append({"kind": kind, "outcome": outcome, "reply": reply, "logged": logged, "frame": shown})
            # Let the jobs accepted last finish (or fail) before counting what went wrong in them.
            time.sleep(3)
            background.update(errors.take())
            try:
                jobs = audit_jobs(stack)
            except Exception as exc:  # a stored item even the SDK cannot read is a finding too
                jobs = Counter({f"(the jobs table cannot be scanned: {type(exc).__name__}: {exc})"[:200]: 1})
        finally:
            service_log.handlers = saved_handlers
            logging.getLogger("comfyroute_dev.gateway").removeHandler(errors)
            tasks_log.removeHandler(errors)
    elapsed = time.monotonic() - started

    print(f"gateway fuzz: seed {args.seed}, {total.sent} frames in {elapsed:.0f} s, each on a new connection")
    header = f"{'kind':<24} {'sent':>5} {'answered':>9} {'internal':>9} {'unanswered':>11} {'closed':>7}"
    print(header)
    print("-" * len(header))
    for kind, t in sorted(per_kind.items()):
        print(f"{kind:<24} {t.sent:>5} {t.answered:>9} {t.internal:>9} {t.unanswered:>11} {t.closed:>7}")
    print("-" * len(header))
    t = total
    print(f"{'total':<24} {t.sent:>5} {t.answered:>9} {t.internal:>9} {t.unanswered:>11} {t.closed:>7}")
    print("\nreplies by type / error code:", dict(total.replies.most_common()))
    if sites:
        print("\nhandler-side failures (one frame per distinct exception site):")
        for site, (kind, line, shown) in sites.items():
            print(f"  - {site_counts[site]} x {line}\n      first frame [{kind}]: {shown}")
    print("accepted jobs by status / error:", dict(jobs.most_common()))
    if background:
        print("\nlogged outside any frame's answer (poll/notify of accepted jobs):")
        for site, n in background.most_common():
            print(f"  - {n} x {site}")
    if args.report:
        args.report.write_text("".join(json.dumps(r) + "\n" for r in report), encoding="utf-8")
        print(f"\nwrote {len(report)} frames to {args.report}")
    return 0


def send(ws_url: str, token: str, frame: str | bytes, timeout: float) -> tuple[str, dict[str, Any]]:
    """One frame on a fresh connection: ("answered", first message) / ("closed", {}) / ("unanswered", {})."""
    with connect(f"{ws_url}/?token={token}", open_timeout=timeout, close_timeout=1, max_size=None) as ws:
        try:
            ws.send(frame)
            raw = ws.recv(timeout=timeout)
        except TimeoutError:
            return "unanswered", {}
        except ConnectionClosed:
            return "closed", {}
    try:
        message = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "answered", {"type": "not-json"}
    return "answered", message if isinstance(message, dict) else {"type": "not-an-object"}


if __name__ == "__main__":
    raise SystemExit(main())
