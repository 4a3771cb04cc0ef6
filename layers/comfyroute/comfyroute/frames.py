"""WebSocket frame bodies -> the command object inside them, for JSON and MessagePack clients.

A frame reaches a handler the way API Gateway puts it in the event: ``body`` (a string) and
``isBase64Encoded``. A text frame is JSON. A binary frame, base64 in the event, is MessagePack:
what nodetool's web client sends for every frame (``msgpackr``'s default ``pack`` in its
``WebSocketManager.send``). :func:`decode_frame` turns either into the same plain data — dicts
with string keys, lists, str, int, float, bool, None — so nothing downstream knows or cares
which one the client used. It only decodes: which command and which fields are valid is the
protocol's business.

Every refusal is one :class:`FrameError` whose message says what is wrong and where
(``data.graph.nodes[2].data: ...``), never quoting more of the frame than a short key:

* nothing, or more than ``max_bytes`` (the frame as sent: UTF-8 text, or the decoded binary);
* not base64, not JSON, not MessagePack, or bytes left over after the first value;
* a top level that is not a map; a key that is not a string; the same key twice (API Gateway's
  route selection and the handler must never read two different ``command`` values);
* nesting deeper than ``max_depth``;
* an integer outside the 64-bit range MessagePack can carry, NaN or an infinity (JSON has
  neither; Python's ``json`` would accept ``NaN``), a string that is not valid Unicode;
* MessagePack ``bin`` (bytes), timestamps and extension types — except the one ``msgpackr``
  writes for JavaScript's ``undefined`` (fixext 1, type 0, one zero byte; every optional field
  nodetool leaves unset arrives as one). It is read the way ``JSON.stringify`` treats the same
  JavaScript object: the key is absent in a map, ``null`` in an array.

``msgpackr`` writes integers beyond 32 bits as float64; a float that is a whole number within
JavaScript's safe-integer range is read as an int, so a seed comes out the same through either
encoding.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any, Final, Literal

import msgpack

from comfyroute.protocol import MAX_MESSAGE_BYTES

FrameEncoding = Literal["json", "msgpack"]

# A nodetool graph frame nests about ten deep (frame > data > graph > nodes > node > data >
# _comfy_metadata > ...); well past any real client, well short of recursion limits.
MAX_DEPTH: Final = 64
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1
# JavaScript numbers are exact integers up to here; msgpackr sends larger whole numbers as float64.
MAX_SAFE_INTEGER: Final = 2**53 - 1
# A JSON integer with more digits than this is outside [INT_MIN, INT_MAX] whatever its digits,
# and is never handed to int() (which refuses past 4300 digits with a plain ValueError).
_MAX_INT_DIGITS: Final = 21
_MAX_KEY_IN_MESSAGE: Final = 40


class FrameError(ValueError):
    """A frame that cannot be decoded; ``message`` is safe to send back to the client."""

    def __init__(self, message: str, *, code: str = "bad_request", encoding: FrameEncoding | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.encoding = encoding


class _Pairs(list[tuple[Any, Any]]):
    """A decoded map before its keys are checked (duplicates and key types need the raw pairs)."""


class _Undefined:
    """msgpackr's ``undefined`` (ext type 0)."""

    def __repr__(self) -> str:
        return "undefined"


_UNDEFINED: Final = _Undefined()


class _Ext:
    def __init__(self, code: int, size: int) -> None:
        self.code = code
        self.size = size


class _HugeInt:
    """A JSON integer too long to be in range; reported with its path once the walk reaches it."""


_HUGE_INT: Final = _HugeInt()


class _NonFinite(ValueError):
    def __init__(self, constant: str) -> None:
        super().__init__(constant)
        self.constant = constant


def decode_frame(
    body: str | bytes | None,
    *,
    base64_encoded: bool = False,
    max_bytes: int = MAX_MESSAGE_BYTES,
    max_depth: int = MAX_DEPTH,
) -> dict[str, Any]:
    """The map a frame carries: JSON for a text frame, MessagePack when ``base64_encoded``."""
    encoding: FrameEncoding = "msgpack" if base64_encoded else "json"
    if body is None or len(body) == 0:
        raise FrameError(
            'empty message: send a JSON object {"command": ..., "data": {...}} (or the same as a MessagePack map)',
            encoding=encoding,
        )
    if base64_encoded:
        return _decode_msgpack(_unbase64(body, max_bytes), max_depth)
    return _decode_json(body, max_bytes, max_depth)


def decode_event_body(
    event: Mapping[str, Any], *, max_bytes: int = MAX_MESSAGE_BYTES, max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """:func:`decode_frame` of an API Gateway MESSAGE event's ``body`` and ``isBase64Encoded``."""
    return decode_frame(
        event.get("body"),
        base64_encoded=event.get("isBase64Encoded") is True,
        max_bytes=max_bytes,
        max_depth=max_depth,
    )


# --------------------------------------------------------------------------- the two decoders


def _too_large(size: int, max_bytes: int, encoding: FrameEncoding) -> FrameError:
    return FrameError(f"message is {size} bytes; the limit is {max_bytes} bytes", code="too_large", encoding=encoding)


def _unbase64(body: str | bytes, max_bytes: int) -> bytes:
    # Refuse by length before decoding anything: 4 base64 characters carry 3 bytes.
    if len(body) > 4 * -(-max_bytes // 3):
        raise _too_large(len(body) * 3 // 4, max_bytes, "msgpack")
    try:
        data = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise FrameError(
            "binary frame body is not valid base64 (isBase64Encoded is true)", encoding="msgpack"
        ) from None
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes, "msgpack")
    if not data:
        raise FrameError("empty binary frame", encoding="msgpack")
    return data


def _ext_hook(code: int, data: bytes) -> object:
    if code == 0 and data == b"\x00":
        return _UNDEFINED
    return _Ext(code, len(data))


def _decode_msgpack(data: bytes, max_depth: int) -> dict[str, Any]:
    try:
        raw = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            object_pairs_hook=_Pairs,
            ext_hook=_ext_hook,
            timestamp=0,
        )
    except msgpack.ExtraData:
        raise FrameError(
            "message is not MessagePack: bytes left over after the first value "
            "(a binary frame holds one MessagePack map; send JSON as a text frame)",
            encoding="msgpack",
        ) from None
    except UnicodeDecodeError:
        raise FrameError("message is not MessagePack: a string is not valid UTF-8", encoding="msgpack") from None
    except msgpack.FormatError:
        raise FrameError(
            "message is not MessagePack: a byte that begins no MessagePack value", encoding="msgpack"
        ) from None
    except msgpack.exceptions.StackError:
        raise FrameError(
            f"message is nested too deeply (the limit is {max_depth} levels)", encoding="msgpack"
        ) from None
    except (msgpack.UnpackException, ValueError, RecursionError) as exc:
        raise FrameError(f"message is not MessagePack: {_reason(exc)}", encoding="msgpack") from None
    return _normalize(raw, "msgpack", max_depth)


def _reason(exc: BaseException) -> str:
    # msgpack's own messages name the format problem and carry no frame content.
    text = str(exc).strip().rstrip(".")
    if isinstance(exc, msgpack.OutOfData) or "incomplete input" in text:
        return "it ends in the middle of a value"
    return (text or type(exc).__name__)[:200]


def _parse_int(digits: str) -> int | _HugeInt:
    return _HUGE_INT if len(digits.lstrip("-")) > _MAX_INT_DIGITS else int(digits)


def _parse_constant(constant: str) -> float:
    raise _NonFinite(constant)


def _decode_json(body: str | bytes, max_bytes: int, max_depth: int) -> dict[str, Any]:
    if isinstance(body, bytes):
        size = len(body)
        if size > max_bytes:
            raise _too_large(size, max_bytes, "json")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("text frame is not valid UTF-8", encoding="json") from None
    else:
        text = body
        # Each character is at least one UTF-8 byte: the cheap check first.
        if len(text) > max_bytes:
            raise _too_large(len(text), max_bytes, "json")
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise _too_large(size, max_bytes, "json")
    try:
        raw = json.loads(text, object_pairs_hook=_Pairs, parse_int=_parse_int, parse_constant=_parse_constant)
    except _NonFinite as exc:
        raise FrameError(f"message is not JSON: {exc.constant} is not a JSON number", encoding="json") from None
    except json.JSONDecodeError as exc:
        raise FrameError(
            f"message is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", encoding="json"
        ) from None
    except RecursionError:
        raise FrameError(f"message is nested too deeply (the limit is {max_depth} levels)", encoding="json") from None
    return _normalize(raw, "json", max_depth)


# --------------------------------------------------------------------------- checking the value


def _kind(value: object) -> str:
    if isinstance(value, _Pairs | dict):
        return "a map"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | _HugeInt):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


def _where(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and len(part) <= _MAX_KEY_IN_MESSAGE:
            out += f".{part}" if out else part
        else:
            shown = part if len(part) <= _MAX_KEY_IN_MESSAGE else part[:_MAX_KEY_IN_MESSAGE] + "..."
            out += f"[{json.dumps(shown)}]"
    return out or "the message"


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON's \\u escapes can spell
        return False
    return True


Container = dict[str, Any] | list[Any]


def _normalize(root: Any, encoding: FrameEncoding, max_depth: int) -> dict[str, Any]:
    """The checked plain copy of a decoded value; raises the first problem found, with its path.

    Iterative, so no frame can exhaust the stack whatever its shape."""

    def fail(path: tuple[str | int, ...], problem: str) -> FrameError:
        return FrameError(f"{_where(path)}: {problem}", encoding=encoding)

    if not isinstance(root, _Pairs):
        raise FrameError(
            f"message must be a map (a JSON object) with 'command' and 'data', not {_kind(root)}", encoding=encoding
        )
    out: dict[str, Any] = {}
    pending: list[tuple[_Pairs | list[Any], Container, tuple[str | int, ...], int]] = [(root, out, (), 1)]

    def convert(value: Any, path: tuple[str | int, ...], depth: int) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if not INT_MIN <= value <= INT_MAX:
                raise fail(path, "integer out of range (MessagePack and this service carry 64-bit integers)")
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise fail(path, "NaN and infinities are not numbers a message can carry")
            if value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
                return int(value)
            return value
        if isinstance(value, str):
            if not _valid_text(value):
                raise fail(path, "string is not valid Unicode (a lone surrogate)")
            return value
        if isinstance(value, _Pairs | list):
            if depth + 1 > max_depth:
                raise fail(path, f"nested more than {max_depth} levels deep")
            child: Container = {} if isinstance(value, _Pairs) else []
            pending.append((value, child, path, depth + 1))
            return child
        if value is _UNDEFINED:
            return _UNDEFINED
        if isinstance(value, _HugeInt):
            raise fail(path, "integer out of range (MessagePack and this service carry 64-bit integers)")
        if isinstance(value, bytes):
            raise fail(path, "binary data (MessagePack bin) is not accepted; send text or base64 in a string")
        if isinstance(value, msgpack.Timestamp):
            raise fail(path, "a MessagePack timestamp (a JavaScript Date) is not accepted; send an ISO 8601 string")
        if isinstance(value, _Ext):
            raise fail(path, f"MessagePack extension type {value.code} is not accepted")
        raise fail(path, f"{type(value).__name__} is not a value a message can carry")

    while pending:
        source, target, path, depth = pending.pop()
        if isinstance(source, _Pairs):
            assert isinstance(target, dict)
            seen: set[str] = set()
            for key, value in source:
                if not isinstance(key, str):
                    raise fail(path, f"map key {_kind(key)} is not a string (keys must be strings)")
                if not _valid_text(key):
                    raise fail(path, "map key is not valid Unicode (a lone surrogate)")
                if key in seen:
                    raise fail((*path, key), "the same key appears twice")
                seen.add(key)
                converted = convert(value, (*path, key), depth)
                if converted is not _UNDEFINED:  # JSON.stringify leaves such keys out
                    target[key] = converted
        else:
            assert isinstance(target, list)
            for index, value in enumerate(source):
                converted = convert(value, (*path, index), depth)
                target.append(None if converted is _UNDEFINED else converted)
    return out
