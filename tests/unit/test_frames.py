"""decode_frame: text frames as JSON, binary frames (base64 at $default) as MessagePack, the same
plain data out of both, and one FrameError naming the problem for anything else."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfyroute.frames import (
    INT_MAX,
    INT_MIN,
    MAX_DEPTH,
    FrameError,
    decode_event_body,
    decode_frame,
)
from comfyroute.protocol import MAX_MESSAGE_BYTES

# msgpackr's encoding of JavaScript's undefined: fixext 1, type 0, one zero byte.
UNDEFINED = msgpack.ExtType(0, b"\x00")
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def packed(value: Any) -> str:
    """A binary frame as API Gateway would hand it to $default: base64 of the msgpack bytes."""
    return b64(msgpack.packb(value, use_bin_type=True))


def binary(value: Any) -> dict[str, Any]:
    return decode_frame(packed(value), base64_encoded=True)


def refused(body: str | bytes | None, *, base64_encoded: bool = False, **limits: int) -> FrameError:
    with pytest.raises(FrameError) as err:
        decode_frame(body, base64_encoded=base64_encoded, **limits)
    assert str(err.value) == err.value.message
    return err.value


RUN_JOB = {
    "type": "run_job",
    "command": "run_job",
    "data": {"job_id": "j-1", "workflow_id": "wf-1", "params": {}, "explicit_types": False, "graph": {"nodes": []}},
}


# --------------------------------------------------------------------------- both encodings


def test_text_frame_is_json() -> None:
    assert decode_frame(json.dumps(RUN_JOB)) == RUN_JOB


def test_binary_frame_is_msgpack_and_gives_the_same_dict() -> None:
    assert binary(RUN_JOB) == RUN_JOB


def test_event_body_reads_is_base64_encoded() -> None:
    assert decode_event_body({"body": packed(RUN_JOB), "isBase64Encoded": True}) == RUN_JOB
    assert decode_event_body({"body": json.dumps(RUN_JOB), "isBase64Encoded": False}) == RUN_JOB
    # A JSON text frame is never base64-decoded, and a binary one never parsed as JSON.
    assert refused(json.dumps(RUN_JOB), base64_encoded=True).encoding == "msgpack"
    with pytest.raises(FrameError):
        decode_event_body({"body": packed(RUN_JOB), "isBase64Encoded": False})


def test_text_body_may_come_as_utf8_bytes() -> None:
    assert decode_frame(json.dumps({"command": "ping", "x": "é"}).encode()) == {"command": "ping", "x": "é"}
    assert "not valid UTF-8" in refused(b'{"command": "\xff"}').message


# --------------------------------------------------------------------------- msgpackr's undefined


def test_undefined_is_left_out_of_maps_and_null_in_arrays_like_json_stringify() -> None:
    frame = {
        "command": "run_job",
        "data": {"resource_limits": UNDEFINED, "job_id": "j", "list": [1, UNDEFINED, 3]},
    }
    assert binary(frame) == {"command": "run_job", "data": {"job_id": "j", "list": [1, None, 3]}}


def test_nodetool_node_with_unset_fields_decodes_as_its_json_would() -> None:
    # reactFlowNodeToGraphNode leaves parent_id and ui_properties.height undefined on every node.
    node = {"id": "3", "type": "comfy.KSampler", "parent_id": UNDEFINED, "ui_properties": {"height": UNDEFINED, "x": 1}}
    as_json = {"id": "3", "type": "comfy.KSampler", "ui_properties": {"x": 1}}
    assert binary({"command": "run_job", "data": {"graph": {"nodes": [node]}}})["data"]["graph"]["nodes"] == [as_json]


def test_other_extension_types_are_refused_with_their_code_and_path() -> None:
    error = refused(packed({"command": "x", "data": {"a": [msgpack.ExtType(5, b"abc")]}}), base64_encoded=True)
    assert error.message == "data.a[0]: MessagePack extension type 5 is not accepted"
    # ext 0 with other data is not undefined either.
    assert "extension type 0" in refused(packed({"a": msgpack.ExtType(0, b"\x01")}), base64_encoded=True).message


def test_timestamps_and_bin_are_refused() -> None:
    stamp = msgpack.Timestamp(1_700_000_000)
    assert "timestamp" in refused(packed({"command": "x", "at": stamp}), base64_encoded=True).message
    error = refused(packed({"command": "x", "data": {"blob": b"\x00\x01"}}), base64_encoded=True)
    assert error.message.startswith("data.blob: binary data (MessagePack bin) is not accepted")


# --------------------------------------------------------------------------- numbers


def test_whole_float64_in_the_safe_range_reads_as_int() -> None:
    # msgpackr writes integers past 32 bits as float64: a seed must not become 1099511627776.0.
    frame = binary({"seed": float(2**40), "cfg": 7.5, "big": float(2**60), "neg": -3.0})
    assert frame == {"seed": 2**40, "cfg": 7.5, "big": float(2**60), "neg": -3}
    assert type(frame["seed"]) is int
    assert type(frame["big"]) is float


@pytest.mark.parametrize("value", [INT_MIN, INT_MAX, 0, -1])
def test_64_bit_integers_pass_both_ways(value: int) -> None:
    assert decode_frame(json.dumps({"n": value})) == {"n": value}
    assert binary({"n": value}) == {"n": value}


@pytest.mark.parametrize("text", [str(INT_MAX + 1), str(INT_MIN - 1), "9" * 5000, "-" + "9" * 30])
def test_out_of_range_json_integers_are_one_error_not_a_crash(text: str) -> None:
    error = refused('{"command": "run_job", "data": {"seed": ' + text + "}}")
    assert error.message.startswith("data.seed: integer out of range")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_non_finite_constants_are_refused(constant: str) -> None:
    assert f"{constant} is not a JSON number" in refused('{"x": ' + constant + "}").message


def test_non_finite_floats_are_refused_in_both() -> None:
    assert refused('{"x": [1e999]}').message.startswith("x[0]: NaN and infinities")
    assert refused(packed({"x": math.nan}), base64_encoded=True).message.startswith("x: NaN and infinities")


# --------------------------------------------------------------------------- shape


@pytest.mark.parametrize("value", [[1, 2], "run_job", 3, None, True])
def test_top_level_must_be_a_map(value: Any) -> None:
    assert refused(json.dumps(value)).message.startswith("message must be a map")
    assert refused(packed(value), base64_encoded=True).message.startswith("message must be a map")


def test_non_string_keys_are_refused_with_the_path() -> None:
    error = refused(packed({"command": "x", "data": {1: "a"}}), base64_encoded=True)
    assert error.message == "data: map key a number is not a string (keys must be strings)"
    assert "not a string" in refused(packed({"data": {(1, 2): "a"}}), base64_encoded=True).message


def test_duplicate_keys_are_refused_in_both() -> None:
    # Route selection might read one "command" and the handler another: neither is allowed to guess.
    assert refused('{"command": "get_job", "command": "run_job"}').message == "command: the same key appears twice"
    twice = b"\x82" + msgpack.packb("command") + msgpack.packb("a") + msgpack.packb("command") + msgpack.packb("b")
    assert refused(b64(twice), base64_encoded=True).message == "command: the same key appears twice"


def test_nesting_limit_counts_the_top_map_as_one() -> None:
    def nested(levels: int) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for _ in range(levels - 1):
            value = {"a": value}
        return value

    assert binary(nested(MAX_DEPTH)) == nested(MAX_DEPTH)
    assert decode_frame(json.dumps(nested(MAX_DEPTH))) == nested(MAX_DEPTH)
    assert "nested more than 64 levels deep" in refused(packed(nested(MAX_DEPTH + 1)), base64_encoded=True).message
    assert "nested more than 64 levels deep" in refused(json.dumps(nested(MAX_DEPTH + 1))).message


def test_pathological_nesting_is_an_error_not_a_recursion_crash() -> None:
    assert "nested" in refused("[" * 100_000).message
    assert "nested" in refused(b64(b"\x91" * 100_000), base64_encoded=True).message


def test_lone_surrogates_in_json_are_refused() -> None:
    assert refused('{"name": "\\ud800"}').message == "name: string is not valid Unicode (a lone surrogate)"
    assert "key is not valid Unicode" in refused('{"\\udfff": 1}').message


def test_long_or_odd_keys_are_quoted_and_shortened_in_paths() -> None:
    error = refused(json.dumps({"data": {"Node name for S&R": {"k" * 100: math.inf}}}).replace("Infinity", "1e999"))
    assert error.message.startswith('data["Node name for S&R"]["' + "k" * 40 + '..."]: NaN')


# --------------------------------------------------------------------------- bytes that are not frames


def test_empty_bodies() -> None:
    for body in (None, "", b""):
        assert refused(body).message.startswith("empty message")
        assert refused(body, base64_encoded=True).message.startswith("empty message")


@pytest.mark.parametrize("body", ["not base64!", "abc", "aGVsbG8=\n", "éé=="])
def test_bad_base64(body: str) -> None:
    assert refused(body, base64_encoded=True).message == (
        "binary frame body is not valid base64 (isBase64Encoded is true)"
    )


def test_bad_msgpack_says_what_is_wrong() -> None:
    whole = msgpack.packb({"command": "ping"})
    assert "ends in the middle" in refused(b64(whole[:-1]), base64_encoded=True).message
    assert "left over" in refused(b64(whole + b"\x00"), base64_encoded=True).message
    assert "not valid UTF-8" in refused(b64(b"\x81\xa1a\xa1\xff"), base64_encoded=True).message
    assert refused(b64(b"\xc1"), base64_encoded=True).message == (
        "message is not MessagePack: a byte that begins no MessagePack value"
    )


def test_json_sent_in_a_binary_frame_is_told_to_use_text() -> None:
    assert "send JSON as a text frame" in refused(b64(json.dumps(RUN_JOB).encode()), base64_encoded=True).message


def test_not_json_names_the_place() -> None:
    assert refused('{"command": }').message == "message is not JSON: Expecting value at line 1 column 13"


# --------------------------------------------------------------------------- size


def test_size_limit_is_the_frame_as_sent_for_both() -> None:
    filler = "x" * 70_000

    def text_of(size: int) -> str:
        head = '{"p": "'
        return head + "y" * (size - len(head) - 2) + '"}'

    assert decode_frame(text_of(MAX_MESSAGE_BYTES))["p"]
    assert refused(text_of(MAX_MESSAGE_BYTES + 1)).code == "too_large"
    # Multi-byte characters count as their UTF-8 bytes.
    error = refused('{"p": "' + "é" * (MAX_MESSAGE_BYTES // 2) + '"}')
    assert error.code == "too_large"
    assert error.message.startswith(f"message is {MAX_MESSAGE_BYTES + 9} bytes; the limit is {MAX_MESSAGE_BYTES}")

    overhead = len(msgpack.packb({"p": filler})) - len(filler)  # map, key and a str32 header
    exact = msgpack.packb({"p": "y" * (MAX_MESSAGE_BYTES - overhead)})
    assert len(exact) == MAX_MESSAGE_BYTES
    assert decode_frame(b64(exact), base64_encoded=True)["p"]
    over = msgpack.packb({"p": "y" * (MAX_MESSAGE_BYTES - overhead + 1)})
    assert refused(b64(over), base64_encoded=True).code == "too_large"


def test_oversized_base64_is_refused_before_decoding() -> None:
    error = refused("A" * (10 * MAX_MESSAGE_BYTES), base64_encoded=True)
    assert error.code == "too_large"
    assert error.encoding == "msgpack"


def test_custom_limits() -> None:
    assert refused('{"a": 1}', max_bytes=4).code == "too_large"
    assert "nested more than 2 levels" in refused('{"a": {"b": {}}}', max_depth=2).message


# --------------------------------------------------------------------------- the replayable event

EVENTS = Path(__file__).resolve().parents[2] / "events"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nodetool"


def test_default_msgpack_event_holds_nodetools_run_job_for_the_imported_graph() -> None:
    event = json.loads((EVENTS / "default_msgpack_run_job.json").read_text())
    assert event["requestContext"]["routeKey"] == "$default"
    assert event["isBase64Encoded"] is True
    frame = decode_event_body(event)
    assert frame["type"] == frame["command"] == "run_job"
    data = frame["data"]
    assert set(data) == {
        "type",
        "api_url",
        "user_id",
        "workflow_id",
        "auth_token",
        "job_type",
        "execution_strategy",
        "params",
        "explicit_types",
        "graph",
        "settings",
        "job_id",
    }  # resource_limits was undefined: absent, as in nodetool's JSON
    graph = json.loads((FIXTURES / "run_job_graph_empty_invert_save.json").read_text())
    assert data["graph"]["nodes"] == graph["nodes"]
    assert data["graph"]["edges"] == graph["edges"]


# --------------------------------------------------------------------------- properties

json_scalars = st.none() | st.booleans() | st.integers(INT_MIN, INT_MAX) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)
frames = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


def _js_numbers(value: Any) -> Any:
    """What a decoded frame holds for ``value``: whole floats in the safe range come back as ints."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53 - 1:
        return int(value)
    if isinstance(value, list):
        return [_js_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _js_numbers(v) for k, v in value.items()}
    return value


def outcome(body: str | bytes, *, base64_encoded: bool = False) -> dict[str, Any] | FrameError:
    """The decoded frame or the FrameError; anything else raised fails the property."""
    try:
        return decode_frame(body, base64_encoded=base64_encoded)
    except FrameError as exc:
        return exc


def assert_dict_or_frame_error(result: dict[str, Any] | FrameError) -> None:
    if isinstance(result, FrameError):
        assert result.message
        assert result.code in ("bad_request", "too_large")
    else:
        assert isinstance(result, dict)
        assert all(isinstance(key, str) for key in result)


@PROPERTY_SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_in_a_binary_frame_give_a_dict_or_one_frame_error(data: bytes) -> None:
    assert_dict_or_frame_error(outcome(b64(data), base64_encoded=True))


@PROPERTY_SETTINGS
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_any_text_or_bytes_as_a_text_frame_give_a_dict_or_one_frame_error(body: str | bytes) -> None:
    assert_dict_or_frame_error(outcome(body))


@PROPERTY_SETTINGS
@given(st.text(max_size=300))
def test_any_string_claiming_base64_gives_a_dict_or_one_frame_error(body: str) -> None:
    result = outcome(body, base64_encoded=True)
    assert_dict_or_frame_error(result)
    if isinstance(result, FrameError):
        assert result.encoding == "msgpack"


@PROPERTY_SETTINGS
@given(frames)
def test_json_and_msgpack_of_the_same_frame_decode_alike(frame: dict[str, Any]) -> None:
    expected = _js_numbers(frame)
    assert decode_frame(json.dumps(frame)) == expected
    assert decode_frame(packed(frame), base64_encoded=True) == expected


@PROPERTY_SETTINGS
@given(frames, st.data())
def test_mutated_msgpack_frames_never_escape_as_other_errors(frame: dict[str, Any], data: st.DataObject) -> None:
    raw = bytearray(msgpack.packb(frame, use_bin_type=True))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] = data.draw(st.integers(0, 255))
    assert_dict_or_frame_error(outcome(b64(bytes(raw)), base64_encoded=True))
