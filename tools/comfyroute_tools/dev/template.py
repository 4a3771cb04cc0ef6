"""Reading ``template.yaml`` into what the dev stack builds.

The dev stack creates its tables, bucket, functions, state machine and WebSocket routes from
the deployment template itself, so the two cannot drift. This module loads the CloudFormation /
SAM YAML (short-form tags included), resolves the intrinsic functions a template of this kind
uses (``Ref``, ``Fn::Sub``, ``Fn::GetAtt``, ``Fn::Join``, ``Fn::If`` and friends) against dev
names, and returns a :class:`TemplatePlan`: plain data, no AWS calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyroute_tools.dev.lambdas import DEFAULT_ACCOUNT_ID, DEFAULT_REGION

DEFAULT_TEMPLATE_PATH = Path(__file__).resolve().parents[3] / "template.yaml"

_FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
_TABLE_TYPES = ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable")
_STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")
# An integration/authorizer URI: arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations
_LAMBDA_URI = re.compile(r"/functions/(?P<arn>arn:[^/]+)/invocations")
# boto3 CreateTable accepts these of the CloudFormation table's properties (names match);
# the rest (TTL, streams, SSE, PITR, tags) are other API calls or irrelevant to moto.
_TABLE_CREATE_KEYS = (
    "TableName",
    "KeySchema",
    "AttributeDefinitions",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
)
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")


class TemplateError(ValueError):
    """The template cannot be read or uses something the dev stack cannot stand in for."""


class _NoValue:
    """``AWS::NoValue``: the property it is assigned to disappears."""


NO_VALUE = _NoValue()


def load_template(path: str | Path = DEFAULT_TEMPLATE_PATH) -> dict[str, Any]:
    """The template as plain dicts, short-form tags turned into their long form (``Fn::Sub``...)."""
    from cfn_flip import load_yaml  # the dev-stack extra; not in the Lambda layer

    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read template {source}: {exc}") from exc
    try:
        loaded = load_yaml(text)
    except Exception as exc:
        raise TemplateError(f"template {source} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, Mapping) or not isinstance(loaded.get("Resources"), Mapping):
        raise TemplateError(f"template {source} has no Resources section")
    # ODict -> dict, so everything downstream sees ordinary types.
    plain: dict[str, Any] = json.loads(json.dumps(loaded, default=str))
    return plain


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    name: str
    create_args: dict[str, Any]  # keyword arguments for DynamoDB CreateTable
    ttl_attribute: str | None = None


@dataclass(frozen=True)
class BucketSpec:
    logical_id: str
    name: str


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    memory_mb: int = 128
    timeout_seconds: int = 3
    # FunctionUrlConfig: the function answers HTTP requests of its own (the dev gateway serves
    # them on its port).
    function_url: bool = False


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    name: str
    arn: str
    definition_path: Path | None
    definition_text: str | None  # an inline definition, when the template carries one
    substitutions: dict[str, str]
    type: str = "STANDARD"


@dataclass(frozen=True)
class RouteSpec:
    route_key: str
    function: str  # logical id of the function the integration calls
    authorized: bool = False
    two_way: bool = False  # a RouteResponse exists: the handler's body goes back to the caller


@dataclass(frozen=True)
class AuthorizerSpec:
    function: str  # logical id
    identity_sources: tuple[str, ...]


@dataclass(frozen=True)
class WebSocketSpec:
    api_logical_id: str
    route_selection_expression: str
    stage: str
    routes: dict[str, RouteSpec]
    authorizer: AuthorizerSpec | None


@dataclass(frozen=True)
class TemplatePlan:
    stack_name: str
    region: str
    account_id: str
    tables: list[TableSpec] = field(default_factory=list)
    buckets: list[BucketSpec] = field(default_factory=list)
    functions: dict[str, FunctionSpec] = field(default_factory=dict)  # by logical id
    state_machines: list[StateMachineSpec] = field(default_factory=list)
    websocket: WebSocketSpec | None = None
    outputs: dict[str, Any] = field(default_factory=dict)

    def function_for_route(self, route_key: str) -> FunctionSpec | None:
        if self.websocket is None or route_key not in self.websocket.routes:
            return None
        return self.functions.get(self.websocket.routes[route_key].function)

    def table(self, logical_id: str) -> TableSpec:
        for t in self.tables:
            if t.logical_id == logical_id:
                return t
        raise KeyError(logical_id)


# --------------------------------------------------------------------------- resolution


def _default_physical_name(stack: str, logical_id: str, *, lower: bool = False) -> str:
    name = f"{stack}-{logical_id}"
    return name.lower() if lower else name


class Resolver:
    """Evaluates intrinsic functions against dev names.

    Physical names come from each resource's name property when it has one, else
    ``{stack}-{LogicalId}`` the way CloudFormation would generate one. ``overrides`` pins the
    ``Ref`` value of any logical id or parameter (the dev stack uses it for the API id).
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        stack_name: str,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        parameters: Mapping[str, str] | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.resources: Mapping[str, Any] = template.get("Resources", {})
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.parameters: dict[str, Any] = {}
        for name, spec in (template.get("Parameters") or {}).items():
            if "Default" in spec:
                self.parameters[name] = spec["Default"]
        self.parameters.update(parameters or {})
        self.overrides = dict(overrides or {})
        self._resolving: set[str] = set()
        self._conditions: dict[str, bool] = {}

    # -- names -----------------------------------------------------------------------------

    def _props(self, logical_id: str) -> Mapping[str, Any]:
        return self.resources[logical_id].get("Properties") or {}

    def _named(self, logical_id: str, prop: str, *, lower: bool = False) -> str:
        if logical_id in self._resolving:
            raise TemplateError(f"resource {logical_id}'s {prop} refers to itself")
        raw = self._props(logical_id).get(prop)
        if raw is None:
            return _default_physical_name(self.stack_name, logical_id, lower=lower)
        self._resolving.add(logical_id)
        try:
            return str(self.resolve(raw))
        finally:
            self._resolving.discard(logical_id)

    def physical_name(self, logical_id: str) -> str:
        rtype = self.resources[logical_id].get("Type", "")
        if rtype in _TABLE_TYPES:
            return self._named(logical_id, "TableName")
        if rtype == "AWS::S3::Bucket":
            return self._named(logical_id, "BucketName", lower=True)
        if rtype in _FUNCTION_TYPES:
            return self._named(logical_id, "FunctionName")
        if rtype == "AWS::Serverless::StateMachine":
            return self._named(logical_id, "Name")
        if rtype == "AWS::StepFunctions::StateMachine":
            return self._named(logical_id, "StateMachineName")
        if rtype == "AWS::SecretsManager::Secret":
            return self._named(logical_id, "Name")
        if rtype == "AWS::IAM::Role":
            return self._named(logical_id, "RoleName")
        if rtype == "AWS::ApiGatewayV2::Stage":
            return self._named(logical_id, "StageName")
        return _default_physical_name(self.stack_name, logical_id)

    def ref(self, name: str) -> Any:
        if name in self.overrides:
            return self.overrides[name]
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/dev",
            "AWS::NotificationARNs": [],
        }
        if name in pseudo:
            return pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        if name not in self.resources:
            raise TemplateError(f"Ref to {name!r}, which is neither a parameter nor a resource")
        rtype = self.resources[name].get("Type", "")
        if rtype in _STATE_MACHINE_TYPES or rtype in ("AWS::SecretsManager::Secret",):
            return self.get_att(name, "Arn")
        if rtype in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            return f"arn:aws:lambda:{self.region}:{self.account_id}:layer:{name}:1"
        if rtype in ("AWS::ApiGatewayV2::Integration", "AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::Authorizer"):
            # Their ids only appear inside other ApiGatewayV2 resources (Target: integrations/{id}).
            return name
        return self.physical_name(name)

    def get_att(self, logical_id: str, attr: str) -> Any:
        key = f"{logical_id}.{attr}"
        if key in self.overrides:
            return self.overrides[key]
        base = logical_id.removesuffix("Url")
        if logical_id not in self.resources and base != logical_id and base in self.resources:
            # SAM's FunctionUrlConfig makes <Function>Url; the dev stack serves it on its gateway
            # and sets the real address when the gateway listens.
            return f"https://{self.physical_name(base)}.lambda-url.{self.region}.on.aws/"
        if logical_id not in self.resources:
            raise TemplateError(f"Fn::GetAtt on {logical_id!r}, which is not a resource")
        rtype = self.resources[logical_id].get("Type", "")
        r, a = self.region, self.account_id
        name = self.physical_name(logical_id)
        if rtype in _TABLE_TYPES:
            arn = f"arn:aws:dynamodb:{r}:{a}:table/{name}"
            return {"Arn": arn, "StreamArn": f"{arn}/stream/dev"}.get(attr, arn)
        if rtype == "AWS::S3::Bucket":
            return {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{r}.amazonaws.com",
            }.get(attr, f"arn:aws:s3:::{name}")
        if rtype in _FUNCTION_TYPES:
            return f"arn:aws:lambda:{r}:{a}:function:{name}"
        if rtype in _STATE_MACHINE_TYPES:
            arn = f"arn:aws:states:{r}:{a}:stateMachine:{name}"
            return {"Name": name}.get(attr, arn)
        if rtype == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{r}:{a}:secret:{name}"
        if rtype == "AWS::IAM::Role":
            return {"RoleId": f"AROADEV{logical_id.upper()}"}.get(attr, f"arn:aws:iam::{a}:role/{name}")
        if rtype == "AWS::ApiGatewayV2::Api":
            api_id = self.ref(logical_id)
            return {"ApiId": api_id, "ApiEndpoint": f"wss://{api_id}.execute-api.{r}.amazonaws.com"}.get(attr, api_id)
        return f"arn:aws:dev:{r}:{a}:{logical_id}/{attr}"

    # -- conditions ------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"condition {name!r} is not defined in Conditions")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    # -- intrinsic functions ---------------------------------------------------------------

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(m: re.Match[str]) -> str:
            inner = m.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"  # ${!Literal} stands for the text ${Literal}
            if inner in variables:
                return str(variables[inner])
            if "." in inner and not inner.startswith("AWS::"):
                logical, attr = inner.split(".", 1)
                return str(self.get_att(logical, attr))
            return str(self.ref(inner))

        return _SUB_VAR.sub(replace, text)

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function evaluated; ``AWS::NoValue`` keys dropped."""
        if isinstance(value, list):
            return [v for v in (self.resolve(x) for x in value) if v is not NO_VALUE]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Condition":
                return self.condition(arg)
            if fn.startswith("Fn::"):
                return self._intrinsic(fn, arg)
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    def _intrinsic(self, fn: str, arg: Any) -> Any:
        if fn == "Fn::Sub":
            if isinstance(arg, str):
                return self._sub(arg, {})
            text, variables = arg
            return self._sub(text, {k: self.resolve(v) for k, v in variables.items()})
        if fn == "Fn::GetAtt":
            logical, attr = arg.split(".", 1) if isinstance(arg, str) else arg
            return self.get_att(logical, self.resolve(attr))
        if fn == "Fn::Join":
            sep, items = arg
            return str(sep).join(str(x) for x in self.resolve(items))
        if fn == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if fn == "Fn::Split":
            sep, text = arg
            return str(self.resolve(text)).split(sep)
        if fn == "Fn::If":
            cond, yes, no = arg
            return self.resolve(yes if self.condition(cond) else no)
        if fn == "Fn::Equals":
            a, b = (self.resolve(x) for x in arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not self.resolve(arg[0])
        if fn == "Fn::And":
            return all(self.resolve(x) for x in arg)
        if fn == "Fn::Or":
            return any(self.resolve(x) for x in arg)
        if fn == "Fn::FindInMap":
            # Keys are strings in YAML mappings, while a Number parameter may load as an int.
            mapping, top, second = (str(self.resolve(x)) for x in arg[:3])
            try:
                return self.template["Mappings"][mapping][top][second]
            except KeyError:
                raise TemplateError(f"Fn::FindInMap: no {mapping}.{top}.{second} in Mappings") from None
        if fn == "Fn::GetAZs":
            return [f"{self.region}a", f"{self.region}b", f"{self.region}c"]
        if fn == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        raise TemplateError(f"the dev stack cannot evaluate {fn} (used in the template)")


# --------------------------------------------------------------------------- building the plan


def _globals_function(template: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((template.get("Globals") or {}).get("Function")) or {}


def _env_vars(props: Mapping[str, Any]) -> dict[str, Any]:
    return dict(((props.get("Environment") or {}).get("Variables")) or {})


def _function_spec(
    logical_id: str, resource: Mapping[str, Any], template: Mapping[str, Any], res: Resolver, root: Path
) -> FunctionSpec:
    g = _globals_function(template)
    props = resource.get("Properties") or {}
    # SAM merges Globals into each function: maps are merged, scalars overridden.
    merged = {**g, **props}
    env = {**_env_vars(g), **_env_vars(props)}
    code_uri = res.resolve(merged.get("CodeUri"))
    handler = res.resolve(merged.get("Handler"))
    if not isinstance(code_uri, str) or not handler:
        raise TemplateError(
            f"function {logical_id} needs a local CodeUri and a Handler for the dev stack "
            f"(got CodeUri={code_uri!r}, Handler={handler!r})"
        )
    resolved_env = {k: "" if v is None else str(v) for k, v in res.resolve(env).items()}
    name = res.physical_name(logical_id)
    return FunctionSpec(
        logical_id=logical_id,
        name=name,
        arn=str(res.get_att(logical_id, "Arn")),
        code_dir=(root / code_uri).resolve(),
        handler=str(handler),
        environment=resolved_env,
        memory_mb=int(res.resolve(merged.get("MemorySize", 128))),
        timeout_seconds=int(res.resolve(merged.get("Timeout", 3))),
        function_url=bool(props.get("FunctionUrlConfig")),
    )


def _table_spec(logical_id: str, resource: Mapping[str, Any], res: Resolver) -> TableSpec:
    name = res.physical_name(logical_id)
    props = res.resolve(resource.get("Properties") or {})
    if resource.get("Type") == "AWS::Serverless::SimpleTable":
        pk = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
        attr_type = {"String": "S", "Number": "N", "Binary": "B"}.get(pk["Type"], pk["Type"])
        args: dict[str, Any] = {
            "TableName": name,
            "KeySchema": [{"AttributeName": pk["Name"], "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": pk["Name"], "AttributeType": attr_type}],
            "BillingMode": "PAY_PER_REQUEST",
        }
        return TableSpec(logical_id, name, args)
    args = {k: props[k] for k in _TABLE_CREATE_KEYS if k in props}
    args["TableName"] = name
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in args:
            args[key] = [{k: ix[k] for k in _INDEX_KEYS if k in ix} for ix in args[key]]
    if "BillingMode" not in args and "ProvisionedThroughput" not in args:
        args["BillingMode"] = "PAY_PER_REQUEST"
    ttl = props.get("TimeToLiveSpecification") or {}
    ttl_attr = ttl.get("AttributeName") if ttl.get("Enabled", True) else None
    return TableSpec(logical_id, name, args, ttl_attr)


def _state_machine_spec(logical_id: str, resource: Mapping[str, Any], res: Resolver, root: Path) -> StateMachineSpec:
    props = resource.get("Properties") or {}
    subs = {k: str(v) for k, v in res.resolve(props.get("DefinitionSubstitutions") or {}).items()}
    path: Path | None = None
    text: str | None = None
    uri = props.get("DefinitionUri")
    if isinstance(uri, str):
        path = (root / uri).resolve()
    elif "DefinitionString" in props:
        text = str(res.resolve(props["DefinitionString"]))
    elif "Definition" in props:
        # An inline definition is YAML in the template; its ${} placeholders are filled below.
        text = json.dumps(props["Definition"])
    else:
        raise TemplateError(f"state machine {logical_id} needs a local DefinitionUri or an inline definition")
    sm_type = str(res.resolve(props.get("Type") or props.get("StateMachineType") or "STANDARD"))
    return StateMachineSpec(
        logical_id=logical_id,
        name=res.physical_name(logical_id),
        arn=str(res.get_att(logical_id, "Arn")),
        definition_path=path,
        definition_text=text,
        substitutions=subs,
        type=sm_type,
    )


def _lambda_from_uri(uri: Any, arn_to_logical: Mapping[str, str], where: str) -> str:
    m = _LAMBDA_URI.search(str(uri))
    if not m:
        raise TemplateError(f"{where}: {uri!r} is not a Lambda invocation URI")
    arn = m.group("arn")
    if arn not in arn_to_logical:
        raise TemplateError(f"{where}: {arn} is not one of the template's functions")
    return arn_to_logical[arn]


def _websocket_spec(
    template: Mapping[str, Any], res: Resolver, functions: Mapping[str, FunctionSpec]
) -> WebSocketSpec | None:
    resources = template["Resources"]
    apis = [
        lid
        for lid, r in resources.items()
        if r.get("Type") == "AWS::ApiGatewayV2::Api"
        and str((r.get("Properties") or {}).get("ProtocolType", "")).upper() == "WEBSOCKET"
    ]
    if not apis:
        return None
    if len(apis) > 1:
        raise TemplateError(f"the dev stack serves one WebSocket API; the template has {len(apis)}: {apis}")
    api = apis[0]
    api_props = res.resolve(resources[api].get("Properties") or {})
    arn_to_logical = {f.arn: lid for lid, f in functions.items()}

    def of_type(rtype: str) -> dict[str, Mapping[str, Any]]:
        return {lid: r for lid, r in resources.items() if r.get("Type") == rtype}

    stages = of_type("AWS::ApiGatewayV2::Stage")
    stage = res.physical_name(next(iter(stages))) if stages else "dev"
    integrations = {
        lid: _lambda_from_uri(
            res.resolve((r.get("Properties") or {}).get("IntegrationUri")), arn_to_logical, f"integration {lid}"
        )
        for lid, r in of_type("AWS::ApiGatewayV2::Integration").items()
    }
    authorizers = {
        lid: AuthorizerSpec(
            function=_lambda_from_uri(
                res.resolve((r.get("Properties") or {}).get("AuthorizerUri")), arn_to_logical, f"authorizer {lid}"
            ),
            identity_sources=tuple(res.resolve((r.get("Properties") or {}).get("IdentitySource") or [])),
        )
        for lid, r in of_type("AWS::ApiGatewayV2::Authorizer").items()
    }
    two_way = {
        str(res.resolve((r.get("Properties") or {}).get("RouteId")))
        for r in of_type("AWS::ApiGatewayV2::RouteResponse").values()
    }
    routes: dict[str, RouteSpec] = {}
    authorizer: AuthorizerSpec | None = None
    for lid, r in of_type("AWS::ApiGatewayV2::Route").items():
        props = res.resolve(r.get("Properties") or {})
        key = str(props["RouteKey"])
        target = str(props.get("Target", ""))
        integration = target.removeprefix("integrations/")
        if integration not in integrations:
            raise TemplateError(f"route {lid} ({key}) targets {target!r}, which is no Lambda integration")
        authorized = str(props.get("AuthorizationType", "NONE")).upper() == "CUSTOM"
        if authorized:
            auth_id = str(props.get("AuthorizerId", ""))
            if auth_id not in authorizers:
                raise TemplateError(f"route {lid} ({key}) uses authorizer {auth_id!r}, which is not in the template")
            authorizer = authorizers[auth_id]
        routes[key] = RouteSpec(
            route_key=key, function=integrations[integration], authorized=authorized, two_way=lid in two_way
        )
    return WebSocketSpec(
        api_logical_id=api,
        route_selection_expression=str(api_props.get("RouteSelectionExpression", "$request.body.action")),
        stage=stage,
        routes=routes,
        authorizer=authorizer,
    )


def build_plan(
    template: Mapping[str, Any],
    *,
    root: str | Path,
    stack_name: str = "comfyroute-dev",
    region: str = DEFAULT_REGION,
    account_id: str = DEFAULT_ACCOUNT_ID,
    parameters: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> TemplatePlan:
    """Everything the dev stack creates, from ``template`` (paths relative to ``root``)."""
    root = Path(root)
    res = Resolver(
        template,
        stack_name=stack_name,
        region=region,
        account_id=account_id,
        parameters=parameters,
        overrides=overrides,
    )
    resources: Mapping[str, Any] = template["Resources"]
    plan = TemplatePlan(stack_name=stack_name, region=region, account_id=account_id)
    for lid, r in resources.items():
        if "Condition" in r and not res.condition(r["Condition"]):
            continue
        rtype = r.get("Type", "")
        if rtype in _TABLE_TYPES:
            plan.tables.append(_table_spec(lid, r, res))
        elif rtype == "AWS::S3::Bucket":
            plan.buckets.append(BucketSpec(lid, res.physical_name(lid)))
        elif rtype in _FUNCTION_TYPES:
            plan.functions[lid] = _function_spec(lid, r, template, res, root)
    for lid, r in resources.items():
        if r.get("Type") in _STATE_MACHINE_TYPES:
            plan.state_machines.append(_state_machine_spec(lid, r, res, root))
    websocket = _websocket_spec(template, res, plan.functions)
    outputs = {}
    for name, out in (template.get("Outputs") or {}).items():
        try:
            outputs[name] = res.resolve(out.get("Value"))
        except TemplateError:
            continue  # an output the dev stack cannot evaluate is just not shown
    return TemplatePlan(
        stack_name=plan.stack_name,
        region=plan.region,
        account_id=plan.account_id,
        tables=plan.tables,
        buckets=plan.buckets,
        functions=plan.functions,
        state_machines=plan.state_machines,
        websocket=websocket,
        outputs=outputs,
    )
