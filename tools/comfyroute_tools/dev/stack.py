"""The whole backend in one process: moto + the real handlers + a WebSocket gateway.

:class:`DevStack` reads ``template.yaml`` and ``statemachine/job.asl.json``, starts an embedded
moto server (DynamoDB, S3, Secrets Manager, Step Functions executing the real definition,
Lambda answered by our handlers in-process), creates every table, bucket and the state machine
the template declares, points the process's AWS SDK at moto (``AWS_ENDPOINT_URL``), sets the
handlers' environment from the template's ``Globals``, and serves the WebSocket API, the
Management API and the web client on one port.

State lives in moto's memory: a restart starts empty (give ``token`` to keep a client's token
valid across restarts). moto's backends and the handlers' environment are process-wide, so one
DevStack runs per process at a time.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import os
import secrets
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
import requests

from comfyroute.executors.runpod_webhook import CALLBACK_PATH
from comfyroute_tools.dev.asl_cache import cache_asl_programs
from comfyroute_tools.dev.gateway import BinaryFrames, Gateway, GatewayConfig
from comfyroute_tools.dev.lambdas import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    FunctionRegistry,
    Handler,
    InProcessFunction,
    load_handler,
    patch_moto_invoke,
)
from comfyroute_tools.dev.sigv4 import SigningKey
from comfyroute_tools.dev.template import (
    DEFAULT_TEMPLATE_PATH,
    FunctionSpec,
    TemplateError,
    TemplatePlan,
    build_plan,
    load_template,
)

log = logging.getLogger("comfyroute_dev")
job_log = logging.getLogger("comfyroute_dev.jobs")

REPO_ROOT = DEFAULT_TEMPLATE_PATH.parent
DEFAULT_STATE_FILE = Path.home() / ".comfyroute" / "dev.json"
DEV_USER = "dev"
DEV_API_ID = "devwsapi01"
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 256

# Variables the dev stack owns in the process environment while it runs (restored on stop).
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# A profile or a per-service endpoint would take boto3 away from moto.
_AWS_ENV_REMOVED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
# Outside Lambda, X-Ray has no daemon and EMF metrics would flood the console.
_POWERTOOLS_DEV_ENV = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"}

_running_lock = threading.Lock()
_running: DevStack | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to listen on) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class DevStackError(RuntimeError):
    """The dev stack could not start; the message says which part and why."""


@dataclass(frozen=True)
class JobEvent:
    """A job message the backend pushed to a client, as the dev console logs it."""

    job_id: str
    status: str
    executor: str | None
    connection_id: str
    error: str | None = None

    def line(self) -> str:
        parts = [f"job {self.job_id}", self.status, f"executor={self.executor or '-'}"]
        if self.error:
            parts.append(f"error={self.error[:200]!r}")
        return " ".join(parts)


def parse_job_event(connection_id: str, data: bytes) -> JobEvent | None:
    """The job event in a Management API post, or None for other messages."""
    try:
        message = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict) or message.get("type") != "job_update" or "job_id" not in message:
        return None
    return JobEvent(
        job_id=str(message["job_id"]),
        status=str(message.get("status", "?")),
        executor=message.get("executor"),
        connection_id=connection_id,
        error=message.get("error"),
    )


def _tiny_zip() -> bytes:
    # moto wants code for CreateFunction; the real code runs in-process, so any zip will do.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def handler(event, context):\n    raise RuntimeError('served in-process')\n")
    return buf.getvalue()


def _merge_env(functions: Mapping[str, FunctionSpec]) -> dict[str, str]:
    """One environment for every handler (they share a process). A name two functions set
    differently keeps the first value; the conflict is logged, since it would behave
    differently once deployed."""
    merged: dict[str, str] = {}
    for spec in functions.values():
        for key, value in spec.environment.items():
            if key in merged and merged[key] != value:
                log.warning(
                    "functions disagree on %s; the dev stack uses one value for all (%s keeps %r)",
                    key,
                    spec.logical_id,
                    merged[key],
                )
                continue
            merged.setdefault(key, value)
    return merged


def _reset_process_caches() -> None:
    """Forget boto3 clients and Powertools providers cached under a previous endpoint, and the
    default session's credentials (each stack gives its handlers a new secret key)."""
    from comfyroute.awslambda import wiring

    boto3.DEFAULT_SESSION = None
    wiring.reset()
    try:
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
    except ImportError:
        pass


class DevStack:
    """`comfyroute dev` as an object: ``start()`` / ``stop()`` or ``with DevStack(...) as s:``.

    ``port=0`` picks a free port (tests). ``handler_overrides`` replaces handlers by the
    template's logical id or function name (tests). ``env_overrides`` wins over the template's
    environment (e.g. ``POLL_INTERVAL_CAP_SECONDS``). ``binary_frames`` is the gateway's
    (``"reject"`` as API Gateway does; ``"default_route"`` for MessagePack clients on one machine).
    ``nodetool`` is `comfyroute dev --nodetool`: binary frames to ``$default``, and a connection
    from loopback without a token is ``dev_user`` (nodetool's client sends no key on localhost).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 3001,
        *,
        comfyui_addr: str | None = None,
        comfyui_headers: Mapping[str, str] | None = None,
        runpod_api_base: str | None = None,
        runpod_api_key: str | None = None,
        token: str | None = None,
        idle_timeout: float = 600,
        max_duration: float = 7200,
        root: str | Path = REPO_ROOT,
        template_path: str | Path | None = None,
        stack_name: str = "comfyroute-dev",
        region: str = DEFAULT_REGION,
        dev_user: str = DEV_USER,
        handler_overrides: Mapping[str, Handler] | None = None,
        env_overrides: Mapping[str, str] | None = None,
        handler_log_level: str | None = None,
        state_file: str | Path | None = None,
        web_dir: str | Path | None = None,
        on_job_event: Callable[[JobEvent], None] | None = None,
        binary_frames: BinaryFrames = "reject",
        nodetool: bool = False,
        signed_management: bool | None = None,
    ) -> None:
        if token is not None and not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
            raise ValueError(f"the dev token must be {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} characters long")
        self.host = host
        self.port = port
        self.comfyui_addr = comfyui_addr
        self.comfyui_headers = dict(comfyui_headers or {})
        self.runpod_api_base = runpod_api_base
        self._runpod_api_key = runpod_api_key
        self._fixed_token = token
        self.idle_timeout = idle_timeout
        self.max_duration = max_duration
        self.root = Path(root)
        self.template_path = Path(template_path) if template_path else self.root / "template.yaml"
        self.stack_name = stack_name
        self.region = region
        self.dev_user = dev_user
        self.handler_overrides = dict(handler_overrides or {})
        self.env_overrides = dict(env_overrides or {})
        self.handler_log_level = handler_log_level
        self.state_file = Path(state_file) if state_file else None
        default_web = Path(__file__).resolve().parents[1] / "web"
        self.web_dir = Path(web_dir) if web_dir else default_web
        self.on_job_event = on_job_event
        self.nodetool = nodetool
        self.binary_frames: BinaryFrames = "default_route" if nodetool else binary_frames
        # None: the Management API wants signed calls exactly when the port is reachable
        # from other machines (tests force it on loopback).
        self.signed_management = not is_loopback(host) if signed_management is None else signed_management

        self.plan: TemplatePlan | None = None
        self.env: dict[str, str] = {}
        self.registry = FunctionRegistry()
        self.gateway: Gateway | None = None
        self.moto_endpoint = ""
        self.state_machine_arn = ""
        self.token = ""
        self.role_arn = ""  # the IAM role moto's functions and state machine are created with
        # The handlers' AWS secret key, new each start: beyond loopback the gateway's Management
        # API answers only requests signed with it (see comfyroute_tools.dev.sigv4).
        self.management_key = SigningKey(_AWS_ENV["AWS_ACCESS_KEY_ID"], secrets.token_urlsafe(32), region)
        self._moto: Any = None
        self._exit = ExitStack()
        self._saved_env: dict[str, str | None] = {}
        self._started = False

    # -- addresses -------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        assert self.gateway is not None, "DevStack not started"
        return self.gateway.http_url

    @property
    def ws_url(self) -> str:
        assert self.gateway is not None, "DevStack not started"
        return self.gateway.ws_url

    def client(self, service: str) -> Any:
        """A boto3 client for the embedded moto (tests, `comfyroute keys`)."""
        # boto3-stubs types boto3.client with one overload per literal service name; this
        # passes any name through and returns Any, as before.
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.moto_endpoint,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> DevStack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> DevStack:
        global _running
        with _running_lock:
            if _running is not None:
                raise DevStackError("a DevStack is already running in this process (moto and the env are shared)")
            _running = self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Close sockets (1001), stop running executions, stop moto, restore the environment."""
        global _running
        try:
            if self.gateway is not None:
                try:
                    self.gateway.stop()
                except Exception:
                    log.exception("gateway did not stop cleanly")
            if self._moto is not None:
                self._stop_executions()
                self._moto.stop()
                self._moto = None
            self._exit.close()
            self._restore_env()
            _reset_process_caches()
            if self.state_file is not None and self._started:
                with suppress(OSError):
                    self.state_file.unlink(missing_ok=True)
        finally:
            self._started = False
            with _running_lock:
                if _running is self:
                    _running = None

    # -- start, step by step -----------------------------------------------------------------

    def _start(self) -> None:
        try:
            template = load_template(self.template_path)
            self.plan = build_plan(
                template,
                root=self.root,
                stack_name=self.stack_name,
                region=self.region,
                account_id=DEFAULT_ACCOUNT_ID,
                overrides=self._api_overrides(template),
            )
        except TemplateError as exc:
            raise DevStackError(str(exc)) from exc
        if self.plan.websocket is None:
            raise DevStackError(f"{self.template_path} declares no WebSocket API (AWS::ApiGatewayV2::Api)")
        # The gateway first: a busy port is the likeliest failure, and it needs no moto.
        self._start_gateway()
        self._start_moto()
        self._set_env()
        self._create_resources()
        self._load_functions()
        self._create_state_machine()
        self.token = self.issue_token(self.dev_user, label="comfyroute dev", token=self._fixed_token)
        self._write_state_file()
        assert self.gateway is not None
        self.gateway.ready.set()

    @staticmethod
    def _api_overrides(template: Mapping[str, Any]) -> dict[str, str]:
        return {
            lid: DEV_API_ID
            for lid, r in template.get("Resources", {}).items()
            if r.get("Type") == "AWS::ApiGatewayV2::Api"
        }

    def _set(self, key: str, value: str | None) -> None:
        if key not in self._saved_env:
            self._saved_env[key] = os.environ.get(key)
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _start_moto(self) -> None:
        from moto.core.config import default_user_config

        from comfyroute_tools.dev.s3post import PolicyEnforcingMotoServer

        # Step Functions must run the definition, not just record executions. moto reads this
        # per request, in this process, for its server mode too.
        sfn_config = default_user_config.setdefault("stepfunctions", {})
        previous = sfn_config.get("execute_state_machine", False)
        sfn_config["execute_state_machine"] = True
        self._exit.callback(sfn_config.__setitem__, "execute_state_machine", previous)

        # moto's server logs every request through werkzeug; the dev console shows job events.
        werkzeug_log = logging.getLogger("werkzeug")
        self._exit.callback(werkzeug_log.setLevel, werkzeug_log.level)
        werkzeug_log.setLevel(logging.WARNING)

        # moto ignores presigned POST policies; the dev stack checks them as S3 does (s3post.py).
        self._moto = PolicyEnforcingMotoServer(
            ip_address="127.0.0.1",
            port=0,
            # The handlers sign with the stack's own secret key (see management_key).
            credentials={self.management_key.access_key: self.management_key.secret_key},
        )
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.moto_endpoint = f"http://{host}:{port}"
        # moto's backends are process globals: start from an empty account.
        requests.post(f"{self.moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()

        for key, value in _AWS_ENV.items():
            self._set(key, value)
        # moto takes any secret; the gateway checks this one (beyond loopback).
        self._set("AWS_SECRET_ACCESS_KEY", self.management_key.secret_key)
        for key in _AWS_ENV_REMOVED:
            self._set(key, None)
        self._set("AWS_ENDPOINT_URL", self.moto_endpoint)
        self._set("AWS_DEFAULT_REGION", self.region)
        self._set("AWS_REGION", self.region)
        # Step Functions' Lambda tasks call Lambda at localhost:$MOTO_PORT (moto's server mode).
        self._set("MOTO_PORT", str(port))
        self._exit.enter_context(patch_moto_invoke(self.registry))
        self._exit.enter_context(cache_asl_programs())

    def _start_gateway(self) -> None:
        assert self.plan is not None
        assert self.plan.websocket is not None
        ws = self.plan.websocket
        routes = {key: self._route_caller(route.function) for key, route in ws.routes.items()}
        authorizer = self._route_caller(ws.authorizer.function) if ws.authorizer else None
        config = GatewayConfig(
            api_id=DEV_API_ID,
            stage=ws.stage,
            region=self.region,
            account_id=DEFAULT_ACCOUNT_ID,
            route_selection_expression=ws.route_selection_expression,
            identity_sources=ws.authorizer.identity_sources if ws.authorizer else (),
            idle_timeout=self.idle_timeout,
            max_duration=self.max_duration,
            web_dir=self.web_dir if self.web_dir.is_dir() else None,
            two_way_routes=frozenset(k for k, r in ws.routes.items() if r.two_way),
            binary_frames=self.binary_frames,
            management_key=self.management_key if self.signed_management else None,
        )
        # Functions with a function URL (RunPod's webhook) are served on the gateway's port.
        callback = next((lid for lid, f in self.plan.functions.items() if f.function_url), None)
        function_urls = {CALLBACK_PATH + "/": self._route_caller(callback)} if callback else {}
        self.gateway = Gateway(
            routes, authorizer, config, on_post=self._on_post, ready=False, function_urls=function_urls
        )
        try:
            self.gateway.start(self.host, self.port)
        except OSError as exc:
            raise DevStackError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from exc

    def _route_caller(self, logical_id: str) -> Callable[[dict[str, Any]], Any]:
        assert self.plan is not None
        name = self.plan.functions[logical_id].name

        def call(event: dict[str, Any]) -> Any:
            function = self.registry.get(name)
            if function is None:
                raise DevStackError(f"function {name} is not loaded")
            return function.call(event)

        return call

    def _set_env(self) -> None:
        assert self.plan is not None
        assert self.gateway is not None
        env = _merge_env(self.plan.functions)
        env.update(_POWERTOOLS_DEV_ENV)
        env["WEBSOCKET_ENDPOINT"] = self.gateway.http_url
        if self.gateway.function_urls:
            env["RUNPOD_CALLBACK_BASE_URL"] = self.gateway.http_url
        if self.runpod_api_base:
            env["RUNPOD_API_BASE"] = self.runpod_api_base
        if self.handler_log_level:
            env["POWERTOOLS_LOG_LEVEL"] = self.handler_log_level
        if self.nodetool:
            # Read by the authorizer only, and only for connections from 127.0.0.1 / ::1.
            env["DEV_ANONYMOUS_USER"] = self.dev_user
        env.update(self.env_overrides)
        for sm in self.plan.state_machines:
            env.setdefault("STATE_MACHINE_ARN", sm.arn)
        self.env = env
        for key, value in env.items():
            self._set(key, value)
        _reset_process_caches()

    def _create_resources(self) -> None:
        assert self.plan is not None
        ddb = self.client("dynamodb")
        for table in self.plan.tables:
            ddb.create_table(**table.create_args)
            if table.ttl_attribute:
                ddb.update_time_to_live(
                    TableName=table.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
                )
        s3 = self.client("s3")
        for bucket in self.plan.buckets:
            if self.region == "us-east-1":
                s3.create_bucket(Bucket=bucket.name)
            else:
                s3.create_bucket(Bucket=bucket.name, CreateBucketConfiguration={"LocationConstraint": self.region})
        prefix = self.env.get("SECRETS_PREFIX", "comfyroute")
        secret: dict[str, Any] = {"COMFYUI_ADDR": self.comfyui_addr or "127.0.0.1:8188"}
        if self._runpod_api_key:
            secret["RUNPOD_API_KEY"] = self._runpod_api_key
        if self.comfyui_headers:
            secret["COMFYUI_HEADERS"] = self.comfyui_headers
        # The dev user's own secret, and the deployment-wide default that every other user
        # (tokens from `comfyroute keys create --user X`) falls back to, as in a deployment.
        secrets = self.client("secretsmanager")
        for name in (f"{prefix}/users/{self.dev_user}", f"{prefix}/default"):
            secrets.create_secret(Name=name, SecretString=json.dumps(secret))

    def _load_functions(self) -> None:
        assert self.plan is not None
        iam = self.client("iam")
        role_arn = iam.create_role(
            RoleName=f"{self.stack_name}-lambda",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        self.role_arn = role_arn
        lam = self.client("lambda")
        code = _tiny_zip()
        for spec in self.plan.functions.values():
            handler = self.handler_overrides.get(spec.logical_id) or self.handler_overrides.get(spec.name)
            if handler is None:
                try:
                    handler = load_handler(
                        spec.code_dir,
                        spec.handler,
                        module_name=f"comfyroute_dev_{spec.logical_id}_{uuid.uuid4().hex[:6]}",
                    )
                except (OSError, ImportError, AttributeError, ValueError) as exc:
                    raise DevStackError(
                        f"cannot load {spec.logical_id} ({spec.code_dir}/{spec.handler}): {exc}"
                    ) from exc
            lam.create_function(
                FunctionName=spec.name,
                Runtime="python3.12",
                Role=role_arn,
                Handler=spec.handler,
                Code={"ZipFile": code},
                Timeout=spec.timeout_seconds,
                MemorySize=spec.memory_mb,
            )
            self.registry.add(
                InProcessFunction(
                    name=spec.name,
                    handler=handler,
                    arn=spec.arn,
                    memory_mb=spec.memory_mb,
                    timeout_seconds=spec.timeout_seconds,
                )
            )

    def _create_state_machine(self) -> None:
        from comfyroute_tools.dev.asl import load_definition, substitute

        assert self.plan is not None
        sfn = self.client("stepfunctions")
        for sm in self.plan.state_machines:
            try:
                if sm.definition_path is not None:
                    definition = load_definition(sm.substitutions, sm.definition_path)
                else:
                    definition = substitute(sm.definition_text or "", sm.substitutions)
            except ValueError as exc:
                raise DevStackError(f"state machine {sm.logical_id}: {exc}") from exc
            created = sfn.create_state_machine(name=sm.name, definition=definition, roleArn=self.role_arn, type=sm.type)
            if created["stateMachineArn"] != sm.arn:
                raise DevStackError(
                    f"state machine {sm.logical_id} was created as {created['stateMachineArn']}, "
                    f"but the handlers were told {sm.arn}"
                )
        self.state_machine_arn = self.env.get("STATE_MACHINE_ARN", "")

    def _stop_executions(self) -> None:
        # Executions sleeping in a Wait state would wake up to a dead moto and log errors.
        try:
            sfn = self.client("stepfunctions")
            for sm in sfn.list_state_machines()["stateMachines"]:
                for ex in sfn.list_executions(stateMachineArn=sm["stateMachineArn"], statusFilter="RUNNING")[
                    "executions"
                ]:
                    sfn.stop_execution(executionArn=ex["executionArn"], error="DevStackStopped")
        except Exception as exc:
            log.debug("could not stop executions: %s", exc)

    def _write_state_file(self) -> None:
        if self.state_file is None:
            return
        assert self.plan is not None
        info = {
            "pid": os.getpid(),
            "moto_endpoint": self.moto_endpoint,
            "region": self.region,
            "api_keys_table": self.env.get("API_KEYS_TABLE", ""),
            "connections_table": self.env.get("CONNECTIONS_TABLE", ""),
            "outputs_bucket": self.env.get("OUTPUTS_BUCKET", ""),
            "dev_user": self.dev_user,
            "ws_url": self.ws_url,
            "http_url": self.http_url,
            # `comfyroute run` / `jobs` use the token for this ws_url only; `keys revoke`
            # signs its DeleteConnection calls with the management key.
            "token": self.token,
            "management_access_key": self.management_key.access_key,
            "management_secret_key": self.management_key.secret_key,
            "started_at": time.time(),
        }
        write_private(self.state_file, json.dumps(info, indent=2) + "\n")

    # -- tokens and job events ---------------------------------------------------------------

    def issue_token(self, user_id: str, label: str | None = None, token: str | None = None) -> str:
        """A new API token for ``user_id`` in this stack's API keys table (only its hash is stored)."""
        table = self.env.get("API_KEYS_TABLE")
        if not table:
            raise DevStackError("the template gives the functions no API_KEYS_TABLE")
        return issue_token_in_table(self.client("dynamodb"), table, user_id, label, token)

    def _on_post(self, connection_id: str, data: bytes) -> None:
        event = parse_job_event(connection_id, data)
        if event is None:
            return
        job_log.info(event.line())
        if self.on_job_event is not None:
            self.on_job_event(event)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (0600, folder 0700), whatever
    the umask, and never briefly world-readable."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def issue_token_in_table(
    dynamodb_client: Any, table: str, user_id: str, label: str | None = None, token: str | None = None
) -> str:
    """Store a token's SHA-256 for ``user_id`` in ``table`` through ``dynamodb_client`` (any
    endpoint: the dev stack's moto or a deployed stack) and return the token.

    Uses :mod:`comfyroute.auth` for the token format and hashing, so the authorizer agrees."""
    from comfyroute import auth

    if not user_id or len(user_id) > 128:
        raise ValueError("user id must be 1 to 128 characters")
    token = token or auth.new_token()
    dynamodb_client.put_item(
        TableName=table,
        Item={
            "key_hash": {"S": auth.hash_token(token)},
            "user_id": {"S": user_id},
            "created_at": {"N": repr(time.time())},
            "revoked": {"BOOL": False},
            **({"label": {"S": label}} if label else {}),
        },
        ConditionExpression="attribute_not_exists(key_hash)",
    )
    return token


@contextmanager
def running(**kwargs: Any) -> Iterator[DevStack]:
    """``with running(port=0) as stack:`` — a started DevStack, stopped on exit."""
    stack = DevStack(**{"port": 0, **kwargs})
    with stack:
        yield stack
