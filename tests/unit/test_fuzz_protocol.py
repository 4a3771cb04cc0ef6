"""A seeded property-based fuzz of ``parse_command``: every frame — any bytes, any text, any JSON,
near-valid commands with hostile values — either parses into a command the backend can serialize
and store, or raises one ``ProtocolError`` whose message names where the problem is. Never another
exception: that is what reached clients as ``internal`` or as no answer at all.

Seeded (``derandomize``) and sized for CI: many examples of cheap strategies, about 11,000 cases
in all (``FUZZ_EXAMPLES_SCALE`` multiplies them for a longer local run).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfyroute.protocol.commands import COMMANDS, ProtocolError, parse_command
from comfyroute.protocol.server_messages import ErrorMessage, encode
from comfyroute.protocol.workflow_commands import RunJob, SaveWorkflow

SCALE = float(os.environ.get("FUZZ_EXAMPLES_SCALE", "1"))


def fuzz(examples: int) -> Any:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        derandomize=True,  # the same cases on every run: CI failures reproduce
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# A rejection names a location: the frame itself ("message ...", "body: ..."), the command, or a
# field path ("data.graph.nodes[3].id: ...").
_NAMES_A_FIELD = re.compile(
    r"^(?:empty message|message\b|'command'|unknown command"
    r'|[A-Za-z0-9_$-]+(?:\.[A-Za-z0-9_$-]+|\[(?:\d+|"(?:[^"\\]|\\.)*")\])*: )'
)
_SERIALIZER = TypeSerializer()
# (test, outcome) -> cases run, for the closing count.
OUTCOMES: Counter[tuple[str, str]] = Counter()


def walk(value: Any) -> Iterator[tuple[Any, Any]]:
    """Every (key, value) pair of every object in ``value``, and (None, x) for the rest."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k, x in v.items():
                yield k, x
                stack.append(x)
        elif isinstance(v, list):
            stack.extend(v)
        else:
            yield None, v


def check(frame: str | bytes, test: str) -> str:
    """Parse ``frame`` and assert the outcome is one the backend can act on."""
    outcome = _check(frame)
    OUTCOMES[test, outcome] += 1
    return outcome


def _check(frame: str | bytes) -> str:
    try:
        cmd = parse_command(frame)
    except ProtocolError as exc:
        rejection = exc
    else:
        return _accepted(cmd)
    assert _NAMES_A_FIELD.match(rejection.message), rejection.message
    assert "\n" not in rejection.message
    # The rejection must itself be sendable: no lone surrogate or other unencodable echo.
    encode(ErrorMessage(message=rejection.message, code=rejection.code, request=rejection.command)).encode("utf-8")
    return "rejected"


def _accepted(cmd: Any) -> str:
    # Accepted: the handlers serialize it (replies, Powertools idempotency) and store parts of
    # it in DynamoDB, so both must work.
    dumped = cmd.model_dump_json()
    dumped.encode("utf-8")
    plain = json.loads(dumped, parse_float=Decimal)
    _SERIALIZER.serialize(plain)
    for key, _ in walk(plain):
        assert key != "", "an empty map key was accepted"
    if isinstance(cmd, RunJob | SaveWorkflow):
        if cmd.data.prompt is not None:
            for node_id, node in cmd.data.prompt.items():
                assert node_id
                assert isinstance(node, dict)
                assert isinstance(node.get("class_type"), str)
                assert node["class_type"]
                assert isinstance(node.get("inputs", {}), dict)
        if cmd.data.graph is not None:
            assert all(n.id for n in cmd.data.graph.nodes)
            assert all(e.source and e.target for e in cmd.data.graph.edges)
    return "accepted"


# --------------------------------------------------------------------------- strategies

# Numbers at and past what Python and DynamoDB take: 4,300-digit ints, 38-digit precision,
# 1e126 magnitude, infinities.
hostile_ints = st.one_of(
    st.integers(min_value=-(10**45), max_value=10**45),
    st.sampled_from([10**38 - 1, 10**38, -(10**38), 2**63, 2**64, 10**200]),
)
hostile_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1e126, 9.9e125, 1e-130, 1e-131, 5e-324, 0.0, -0.0]),
)
# Any code point, lone surrogates included.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
keys = st.one_of(st.sampled_from(["", "1", "id", "type", "inputs", "class_type", "seed", "_x"]), any_text)
scalars = st.one_of(st.none(), st.booleans(), hostile_ints, hostile_floats, any_text)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)),
    max_leaves=8,
)
# Cheap stand-ins for "anything" inside command fields: one level of containers at most.
shallow: st.SearchStrategy[Any] = st.one_of(
    scalars, st.lists(scalars, max_size=3), st.dictionaries(keys, st.one_of(scalars, st.just({})), max_size=3)
)


def dumps(value: Any) -> str:
    # allow_nan: NaN/Infinity are not JSON but json.dumps writes them, and clients may too.
    return json.dumps(value, allow_nan=True)


def mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a valid value, sometimes a hostile one: a command with one or two bad fields
    reaches the checks past the first."""
    return st.integers(min_value=0, max_value=7).flatmap(lambda n: hostile if n == 0 else valid)


# Valid parts of commands...
plain_keys = st.sampled_from(["width", "height", "seed", "text", "image", "_comfy_metadata", "theme"])
plain_values = st.one_of(
    st.integers(min_value=-1000, max_value=2**63),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.text("abc XYZ019_-", max_size=8),
    st.booleans(),
    st.none(),
)
# ...and hostile ones.
node_ids = mostly(
    st.one_of(st.integers(min_value=1, max_value=9), st.sampled_from(["1", "2", "a"])),
    st.one_of(st.sampled_from(["", " ", -1]), any_text, shallow),
)
inputs = st.dictionaries(mostly(plain_keys, keys), mostly(plain_values, shallow), max_size=3)
nodes = st.fixed_dictionaries(
    {
        "id": node_ids,
        "type": mostly(
            st.sampled_from(["comfy.EmptyImage", "comfy.SaveImage"]), st.sampled_from(["", "nodetool.x"]) | shallow
        ),
    },
    optional={"data": mostly(inputs, shallow), "properties": mostly(inputs, shallow), "position": shallow},
)
edges = st.fixed_dictionaries(
    {"source": node_ids, "target": node_ids},
    optional={
        "sourceHandle": mostly(st.sampled_from(["output_0", "IMAGE"]), st.one_of(st.none(), any_text)),
        "targetHandle": mostly(st.sampled_from(["image", "input_0"]), st.one_of(st.none(), any_text)),
    },
)
graphs = mostly(
    st.fixed_dictionaries({"nodes": st.lists(nodes, max_size=3)}, optional={"edges": st.lists(edges, max_size=2)}),
    shallow,
)
prompt_nodes = mostly(
    st.fixed_dictionaries(
        {"class_type": mostly(st.sampled_from(["EmptyImage", "SaveImage"]), st.one_of(st.just(""), any_text, shallow))},
        optional={"inputs": mostly(inputs, shallow)},
    ),
    shallow,
)
prompts = mostly(
    st.dictionaries(mostly(st.sampled_from(["1", "2", "10"]), keys), prompt_nodes, min_size=1, max_size=3), shallow
)
settings_maps = mostly(
    st.fixed_dictionaries(
        {},
        optional={
            "comfy_executor": mostly(st.sampled_from(["local", "runpod"]), st.one_of(st.just(""), shallow)),
            "runpod_endpoint_id": mostly(
                st.sampled_from(["ep_1", " ep_2 "]), st.one_of(st.sampled_from([" ", ""]), any_text)
            ),
        },
    ).flatmap(lambda base: inputs.map(lambda extra: {**extra, **base})),
    shallow,
)
job_ids = mostly(
    st.sampled_from(["job-1", "j.2", "J_3-x"]),
    st.one_of(st.sampled_from(["", "a" * 81, "j 1"]), any_text, hostile_ints),
)
workflow_ids = mostly(st.sampled_from(["wf", "wf:1", "team.a-b"]), st.one_of(st.just(""), any_text))
run_job_data = st.one_of(
    st.fixed_dictionaries(
        {"graph": graphs},
        optional={
            "job_id": job_ids,
            "workflow_id": workflow_ids,
            "settings": settings_maps,
            "params": st.dictionaries(mostly(st.sampled_from(["1", "2"]), keys), mostly(inputs, shallow), max_size=2),
        },
    ),
    st.fixed_dictionaries({"prompt": prompts}, optional={"job_id": job_ids, "settings": settings_maps}),
    st.fixed_dictionaries({"workflow_id": workflow_ids}, optional={"job_id": job_ids, "settings": settings_maps}),
    st.fixed_dictionaries({}, optional={"graph": graphs, "prompt": prompts, "extra": shallow}),
)
save_workflow_data = st.fixed_dictionaries(
    {"workflow_id": workflow_ids},
    optional={
        "name": mostly(st.text("ab ", max_size=5), st.one_of(any_text, shallow)),
        "graph": graphs,
        "settings": settings_maps,
    },
)
envelopes = st.one_of(
    st.fixed_dictionaries({"command": st.just("run_job"), "data": run_job_data}),
    st.fixed_dictionaries({"command": st.just("save_workflow"), "data": save_workflow_data}),
    st.fixed_dictionaries(
        {"command": st.sampled_from(["cancel_job", "get_job"]), "data": st.fixed_dictionaries({"job_id": job_ids})}
    ),
    st.fixed_dictionaries(
        {"command": st.sampled_from(["list_jobs", "ping"])},
        optional={
            "data": mostly(
                st.fixed_dictionaries({}, optional={"limit": mostly(st.integers(1, 100), hostile_ints)}), shallow
            )
        },
    ),
    st.fixed_dictionaries(
        {"command": st.one_of(st.sampled_from([*COMMANDS, "", "$default", "run_jobs"]), shallow)},
        optional={"data": shallow, "extra": shallow},
    ),
)


# --------------------------------------------------------------------------- the properties


@fuzz(2_000)
@given(st.binary(max_size=160))
def test_any_bytes(frame: bytes) -> None:
    check(frame, "test_any_bytes")


@fuzz(2_000)
@given(st.text(st.characters(codec=None, exclude_categories=()), max_size=160))
def test_any_text(frame: str) -> None:
    check(frame, "test_any_text")


@fuzz(1_500)
@given(json_values)
def test_any_json_value(value: Any) -> None:
    check(dumps(value), "test_any_json_value")


@fuzz(3_500)
@given(envelopes)
def test_near_valid_commands(value: dict[str, Any]) -> None:
    check(dumps(value), "test_near_valid_commands")


@fuzz(500)
@given(envelopes, st.integers(min_value=0, max_value=400), st.data())
def test_truncated_and_spliced_frames(value: dict[str, Any], cut: int, data: st.DataObject) -> None:
    text = dumps(value)
    junk = data.draw(st.sampled_from(["", "}", "]", ",", '"', "\\", "\\ud800", "1e999", "-", '{"a":']))
    check(text[: min(cut, len(text))] + junk + text[min(cut, len(text)) :], "test_truncated_and_spliced_frames")


@fuzz(500)
@given(st.integers(min_value=1, max_value=3_000), st.sampled_from(["[", '{"a":']), st.booleans())
def test_deep_nesting(depth: int, opener: str, inside_prompt: bool) -> None:
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    if inside_prompt:
        frame = '{"command":"run_job","data":{"prompt":{"1":{"class_type":"X","inputs":{"v":' + nested + "}}}}}"
    else:
        frame = '{"command":"ping","data":' + nested + "}"
    check(frame, "test_deep_nesting")


@fuzz(500)
@given(st.integers(min_value=1, max_value=6_000), st.sampled_from(["", "-", "0.", "1e"]), st.booleans())
def test_long_numbers(digits: int, sign: str, in_settings: bool) -> None:
    number = sign + "9" * digits
    if sign == "0.":
        number = "0." + "0" * digits + "1"
    where = '"settings":{"seed":' if in_settings else '"params":{"1":{"seed":'
    close = "}" if in_settings else "}}"
    check('{"command":"run_job","data":{"workflow_id":"wf",' + where + number + close + "}}", "test_long_numbers")


@fuzz(500)
@given(
    st.integers(min_value=0xD800, max_value=0xDFFF),
    st.booleans(),
    st.text("ab1 ", max_size=6),
    st.sampled_from(["command", "job_id", "key", "value", "class_type", "setting"]),
)
def test_lone_surrogates(code: int, escaped: bool, around: str, where: str) -> None:
    # Escaped in the JSON text ("\\ud800", valid UTF-8 on the wire) or raw in a str frame.
    surrogate = f"\\u{code:04x}" if escaped else chr(code)
    s = around + surrogate + around
    frames = {
        "command": '{"command":"' + s + '"}',
        "job_id": '{"command":"get_job","data":{"job_id":"' + s + '"}}',
        "key": '{"command":"run_job","data":{"prompt":{"' + s + '":{"class_type":"X","inputs":{}}}}}',
        "value": '{"command":"run_job","data":{"prompt":{"1":{"class_type":"X","inputs":{"t":"' + s + '"}}}}}',
        "class_type": '{"command":"run_job","data":{"prompt":{"1":{"class_type":"' + s + '"}}}}',
        "setting": '{"command":"save_workflow","data":{"workflow_id":"wf","settings":{"t":"' + s + '"}}}',
    }
    assert check(frames[where], "test_lone_surrogates") == "rejected"


FUZZ_TESTS = (
    "test_any_bytes",
    "test_any_text",
    "test_any_json_value",
    "test_near_valid_commands",
    "test_truncated_and_spliced_frames",
    "test_deep_nesting",
    "test_long_numbers",
    "test_lone_surrogates",
)


def test_zz_the_fuzz_ran_enough_cases_and_reached_both_outcomes() -> None:
    ran = {test for test, _ in OUTCOMES}
    if ran != set(FUZZ_TESTS) or SCALE < 1:
        import pytest

        pytest.skip("counts only when every fuzz test of this module ran at full scale")
    total = sum(OUTCOMES.values())
    print(f"\nparse_command fuzz: {total} cases", dict(sorted(OUTCOMES.items())))
    assert total >= 10_000
    # Strategies that only ever produce garbage would test the first check and nothing else.
    assert OUTCOMES["test_near_valid_commands", "accepted"] >= 200
    assert OUTCOMES["test_near_valid_commands", "rejected"] >= 200
