"""Lambda functions run in this process, the way the Lambda service runs them.

Three pieces, shared by `comfyroute dev` and the tests' Step Functions harness:

* :func:`load_handler` imports ``functions/<name>/app.py`` (the template's ``CodeUri`` +
  ``Handler``) under a module name of its own, so two functions' ``app`` modules never clash
  and a fresh stack gets fresh module state (cached clients, Powertools objects).
* :class:`InProcessFunction` invokes a handler with a Lambda-like context and answers as the
  Python runtime does: the return value as JSON, or an *unhandled error* payload
  ``{"errorMessage", "errorType", "requestId", "stackTrace"}`` whose ``errorType`` is the
  exception's class name.
* :func:`patch_moto_invoke` makes moto's Lambda ``Invoke`` (server mode and ``mock_aws`` alike)
  call the registered functions. Step Functions' Lambda tasks go through that API, so a raised
  ``ExecutorUnavailable`` reaches the state machine as ``Error: ExecutorUnavailable`` and the
  definition's ``Retry`` / ``Catch`` behave as deployed.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

log = logging.getLogger("comfyroute_dev")

Handler = Callable[[Any, "LambdaContext"], Any]

DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 128
    timeout_seconds: float = 3.0
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "dev"
    _started: float = field(default_factory=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        # Nothing can stop a Python thread, so the timeout is advisory here: handlers that
        # budget their work on it see the same countdown they would see on Lambda.
        left = self.timeout_seconds - (time.monotonic() - self._started)
        return max(0, int(left * 1000))


@dataclass(frozen=True)
class InvocationResult:
    """What Lambda's Invoke answers: a JSON payload, and ``error_type`` when the handler raised."""

    payload: bytes
    request_id: str
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def value(self) -> Any:
        return json.loads(self.payload) if self.payload else None


def error_payload(exc: BaseException, request_id: str) -> dict[str, Any]:
    """The Python runtime's body for an unhandled error; Step Functions reads ``errorType``."""
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def arn_for(name: str, region: str = DEFAULT_REGION, account_id: str = DEFAULT_ACCOUNT_ID) -> str:
    return f"arn:aws:lambda:{region}:{account_id}:function:{name}"


def function_name_of(name_or_arn: str) -> str:
    """Lambda accepts a name, a full ARN or a partial ARN (``...:function:NAME[:QUALIFIER]``)."""
    if ":function:" in name_or_arn:
        return name_or_arn.split(":function:", 1)[1].split(":", 1)[0]
    return name_or_arn


@dataclass
class InProcessFunction:
    """One Lambda function whose handler is a Python callable in this process."""

    name: str
    handler: Handler
    arn: str = ""
    memory_mb: int = 128
    timeout_seconds: float = 3.0

    def __post_init__(self) -> None:
        if not self.arn:
            self.arn = arn_for(self.name)

    def context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.name,
            invoked_function_arn=self.arn,
            memory_limit_in_mb=self.memory_mb,
            timeout_seconds=self.timeout_seconds,
        )

    def call(self, event: Any) -> Any:
        """Run the handler on a copy of ``event`` (Lambda hands every invocation its own);
        the handler's exception propagates."""
        return self.handler(copy.deepcopy(event), self.context())

    def invoke(self, event: Any) -> InvocationResult:
        """Run the handler and answer like Lambda's Invoke: never raises for a handler error."""
        context = self.context()
        try:
            result = self.handler(copy.deepcopy(event), context)
        except Exception as exc:
            log.debug("function %s raised %s", self.name, type(exc).__name__, exc_info=True)
            body = error_payload(exc, context.aws_request_id)
            return InvocationResult(json.dumps(body).encode(), context.aws_request_id, type(exc).__name__)
        try:
            payload = json.dumps(result).encode()
        except (TypeError, ValueError) as exc:
            # What the runtime reports for a return value it cannot serialise.
            body = {
                "errorMessage": f"Unable to marshal response: {exc}",
                "errorType": "Runtime.MarshalError",
                "requestId": context.aws_request_id,
                "stackTrace": [],
            }
            return InvocationResult(json.dumps(body).encode(), context.aws_request_id, "Runtime.MarshalError")
        return InvocationResult(payload, context.aws_request_id)


class FunctionRegistry:
    """Functions by name; thread-safe, since moto's server answers each request in a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._functions: dict[str, InProcessFunction] = {}

    def add(self, function: InProcessFunction) -> InProcessFunction:
        with self._lock:
            self._functions[function.name] = function
        return function

    def remove(self, name: str) -> None:
        with self._lock:
            self._functions.pop(name, None)

    def get(self, name_or_arn: str) -> InProcessFunction | None:
        with self._lock:
            return self._functions.get(function_name_of(name_or_arn))

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._functions)

    def __contains__(self, name_or_arn: object) -> bool:
        return isinstance(name_or_arn, str) and self.get(name_or_arn) is not None


# --------------------------------------------------------------------------- loading handlers

_load_lock = threading.Lock()


def load_handler(code_dir: str | Path, handler: str = "app.handler", *, module_name: str | None = None) -> Handler:
    """Import the handler ``module.function`` from ``code_dir`` as Lambda would.

    The module gets a unique name (``module_name`` or a generated one) so every function
    directory's ``app.py`` is its own module. ``code_dir`` is on ``sys.path`` while the module
    executes, as it is on Lambda, so sibling imports at module level work.
    """
    code_dir = Path(code_dir)
    module_path, _, func_name = handler.rpartition(".")
    if not module_path or not func_name:
        raise ValueError(f"handler {handler!r} must look like 'module.function'")
    source = code_dir.joinpath(*module_path.split(".")).with_suffix(".py")
    if not source.is_file():
        raise FileNotFoundError(f"handler module {source} (from handler {handler!r}) does not exist")
    name = module_name or f"comfyroute_dev_fn_{code_dir.name}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {source}")
    module = importlib.util.module_from_spec(spec)
    with _load_lock:
        sys.path.insert(0, str(code_dir))
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        finally:
            with suppress(ValueError):
                sys.path.remove(str(code_dir))
    func = getattr(module, func_name, None)
    if not callable(func):
        raise AttributeError(f"{source} has no callable {func_name!r} (handler {handler!r})")
    return func  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- moto integration


def _answer(function: InProcessFunction, body: Any, headers: Any, response_headers: dict[str, str]) -> bytes:
    raw = body.decode() if isinstance(body, bytes) else (body or "")
    event = json.loads(raw) if raw.strip() else {}
    invocation_type = (headers or {}).get("X-Amz-Invocation-Type") or (headers or {}).get(
        "x-amz-invocation-type", "RequestResponse"
    )
    if invocation_type == "DryRun":
        return b""
    if invocation_type == "Event":
        # Asynchronous invoke: Lambda accepts (202) and runs it later; errors only reach logs.
        threading.Thread(target=function.invoke, args=(event,), name=f"lambda-{function.name}", daemon=True).start()
        return b""
    result = function.invoke(event)
    if not result.ok:
        response_headers["x-amz-function-error"] = "Unhandled"
    response_headers["x-amz-executed-version"] = "$LATEST"
    return result.payload


@contextmanager
def patch_moto_invoke(registry: FunctionRegistry) -> Iterator[FunctionRegistry]:
    """While active, moto's Lambda ``Invoke`` of a function named in ``registry`` runs its
    Python handler; other functions reach moto's own backend unchanged.

    The function must also exist in moto (``create_function``) when the caller goes through
    boto3 in server mode, because moto routes the request before the backend sees it; Step
    Functions only needs the name. Patches stack, so a test harness and a dev stack can both
    be active.
    """
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda_simple.models import LambdaSimpleBackend

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def invoke(
            backend: Any,
            function_name: str,
            qualifier: str | None,
            body: Any,
            headers: Any,
            response_headers: dict[str, str],
        ) -> str | bytes | None:
            function = registry.get(function_name)
            if function is None:
                answer: str | bytes | None = original(
                    backend, function_name, qualifier, body, headers, response_headers
                )
                return answer
            payload = _answer(function, body, headers, response_headers)
            response_headers["Content-Length"] = str(len(payload))
            return payload

        return invoke

    # LambdaSimpleBackend (use_docker=False) overrides invoke, so each class gets its own wrapper.
    with (
        mock.patch.object(LambdaBackend, "invoke", wrap(LambdaBackend.invoke)),
        mock.patch.object(LambdaSimpleBackend, "invoke", wrap(LambdaSimpleBackend.invoke)),
        mock.patch.object(_lambda_eval_utils(), "boto_client_for", _cached_clients(registry)),
    ):
        yield registry


def _lambda_eval_utils() -> Any:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    return lambda_eval_utils


class _InProcessLambdaClient:
    """The Lambda client of Step Functions' tasks: a function in ``registry`` is invoked right
    here, as Step Functions invokes Lambda without an HTTP hop of ours, answering what boto3's
    ``invoke`` answers; anything else goes to moto through ``client``. Saves each task a round
    trip through moto's server (a request thread, Flask, the botocore codec both ways)."""

    def __init__(self, registry: FunctionRegistry, client: Any) -> None:
        self._registry = registry
        self._client = client

    def invoke(self, **params: Any) -> dict[str, Any]:
        function = self._registry.get(params.get("FunctionName", ""))
        invocation_type = params.get("InvocationType", "RequestResponse")
        if function is None or invocation_type != "RequestResponse" or params.get("Qualifier") not in (None, "$LATEST"):
            answer: dict[str, Any] = self._client.invoke(**params)
            return answer
        body = params.get("Payload") or b""
        raw = body.decode() if isinstance(body, bytes) else str(body)
        result = function.invoke(json.loads(raw) if raw.strip() else {})
        answer = {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": io.BytesIO(result.payload)}
        if not result.ok:
            answer["FunctionError"] = "Unhandled"
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _cached_clients(registry: FunctionRegistry) -> Callable[..., Any]:
    """moto's ``boto_client_for`` builds a new boto3 client for every Lambda task (10-30 ms of
    CPU each, on every state of the loop); one client per region and mode does (boto3 clients
    are thread-safe). Lambda's invokes the registered functions in-process."""
    from moto.core.models import botocore_stubber
    from moto.stepfunctions.parser.asl.utils import boto_client

    build = boto_client.boto_client_for
    cache: dict[tuple[str, str, bool, str], Any] = {}
    lock = threading.Lock()

    def client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        # moto's own builder takes fixed test credentials whatever the state's are.
        key = (region, service, bool(botocore_stubber.enabled), os.environ.get("MOTO_PORT", ""))
        with lock:
            if key not in cache:
                client = build(region=region, service=service)
                cache[key] = _InProcessLambdaClient(registry, client) if service == "lambda" else client
            return cache[key]

    return client_for
