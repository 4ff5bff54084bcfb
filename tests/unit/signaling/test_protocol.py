"""The wire protocol: parsing, typed errors, the JSON Schema and docs/signaling.md agreeing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from server.kernel.errors import SignalingError
from signaling.edge import parse
from signaling.errors import ERROR_CODES
from signaling.protocol import (
    PROTOCOL,
    Ack,
    Join,
    SendChat,
    client_adapter,
    encode,
    json_schema,
    message_types,
    server_adapter,
)

DOCS = Path(__file__).parents[3] / "docs" / "signaling.md"


def test_parses_each_kind_of_client_message() -> None:
    msg = parse('{"type": "join", "id": "1", "room_id": "r-abc", "token": "t"}')
    assert isinstance(msg, Join) and msg.room_id == "r-abc"
    msg = parse('{"type": "chat", "id": "2", "text": "您好"}')
    assert isinstance(msg, SendChat) and msg.text == "您好"


@pytest.mark.parametrize(
    ("text", "code", "field"),
    [
        ('{"type": "fly", "id": "1"}', "unknown_type", "type"),
        ('{"id": "1"}', "bad_message", "type"),  # #19 finding 5: not unknown_type None
        ('{"type": 5, "id": "1"}', "bad_message", "type"),
        ('{"type": null, "id": "1"}', "bad_message", "type"),
        ('{"type": "chat", "id": "1"}', "bad_message", "text"),
        ('{"type": "chat", "id": "1", "text": ""}', "bad_message", "text"),
        ('{"type": "chat", "text": "x"}', "bad_message", "id"),
        ('{"type": "chat", "id": "1", "text": "x", "evil": true}', "bad_message", "evil"),
        # a NUL cannot be stored (PostgreSQL text): found by `onedoor bench fuzz-signaling`
        ('{"type": "chat", "id": "1", "text": "a\\u0000b"}', "bad_message", "text"),
        ('{"type": "deny", "id": "1", "peer_id": "p-1", "reason": "\\u001b[31m"}',
         "bad_message", "reason"),
        ('{"type": "join", "id": "1", "room_id": "../etc"}', "bad_message", "room_id"),
        ('{"type": "candidate", "id": "1", "candidate": "c", "sdp_mline_index": -1}',
         "bad_message", "sdp_mline_index"),
        ("[1, 2]", "bad_message", "(message)"),
        ("{", "bad_message", "(message)"),
    ],
)  # fmt: skip
def test_bad_messages_raise_typed_errors(text: str, code: str, field: str | None) -> None:
    with pytest.raises(SignalingError) as info:
        parse(text)
    assert info.value.code == code
    if field is not None:
        assert info.value.details["field"] == field


def test_messages_are_frozen_and_strict() -> None:
    msg = SendChat(id="1", text="x")
    with pytest.raises(ValidationError):
        msg.text = "y"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Ack(re="1", extra="no")  # type: ignore[call-arg]


@given(st.text(max_size=300))
def test_parser_never_fails_untyped(text: str) -> None:
    try:
        parse(text)
    except SignalingError as e:
        assert e.code in ("bad_message", "unknown_type")


@given(
    st.dictionaries(
        st.sampled_from(["type", "id", "text", "room_id", "peer_id", "sdp", "locked", "kind"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                  st.sampled_from(message_types(client_adapter))),
    )
)  # fmt: skip
def test_parser_on_random_objects(obj: dict[str, object]) -> None:
    try:
        msg = parse(json.dumps(obj))
    except SignalingError as e:
        assert e.code in ("bad_message", "unknown_type")
    else:
        assert msg.type == obj["type"]


def test_schema_lists_both_directions() -> None:
    schema = json_schema()
    assert schema["title"] == PROTOCOL
    assert "join" in message_types(client_adapter)
    assert "welcome" in message_types(server_adapter)


def _doc_examples() -> list[tuple[str, dict[str, object]]]:
    """Every line of every ```json client / ```json server block in docs/signaling.md."""
    text = DOCS.read_text(encoding="utf-8")
    out = []
    for direction, block in re.findall(r"```json (client|server)\n(.*?)```", text, flags=re.S):
        for line in block.strip().splitlines():
            out.append((direction, json.loads(line)))
    return out


def test_every_message_type_has_a_valid_example_in_the_docs() -> None:
    seen: dict[str, set[str]] = {"client": set(), "server": set()}
    for direction, example in _doc_examples():
        adapter = client_adapter if direction == "client" else server_adapter
        adapter.validate_python(example)
        seen[direction].add(str(example["type"]))
    assert set(message_types(client_adapter)) == seen["client"]
    assert set(message_types(server_adapter)) == seen["server"]


def _published() -> dict[str, Any]:
    return dict(json.loads(DOCS.with_name("signaling.schema.json").read_text(encoding="utf-8")))


def _validator(ref: str | None = None) -> Draft202012Validator:
    schema = _published()
    if ref is not None:
        schema = {**schema, "$ref": ref}
        schema.pop("anyOf")
    return Draft202012Validator(schema)


def test_the_published_schema_validates_every_documented_message_as_it_stands() -> None:
    client, server = _validator("#/$defs/ClientMessage"), _validator("#/$defs/ServerMessage")
    for direction, example in _doc_examples():
        (client if direction == "client" else server).validate(example)
        _validator().validate(example)


@pytest.mark.parametrize(
    "message",
    [
        {"type": "nonsense"},
        {"id": "1", "text": "no type"},
        {"type": 7, "id": "1"},
        {"type": "chat", "id": "1", "text": "hi", "unexpected": True},
        {"type": "chat", "id": "1", "text": "a\x00b"},
        {"type": "error", "code": "not_a_documented_code", "message": "x", "message_zh": "x"},
    ],
)
def test_the_published_schema_rejects_what_the_server_rejects(message: dict[str, Any]) -> None:
    assert not _validator().is_valid(message)


def test_every_error_code_is_documented_once_and_in_the_schema() -> None:
    text = DOCS.read_text(encoding="utf-8")
    table = text[text.index("## Error codes") : text.index("## Close codes")]
    documented = {
        code
        for first_cell in re.findall(r"^\|([^|]*)\|", table, flags=re.M)
        for code in re.findall(r"`([a-z_]+)`", first_cell)
    }
    assert documented == set(ERROR_CODES)
    error = _published()["$defs"]["Error"]["properties"]["code"]
    assert error["enum"] == list(ERROR_CODES)


def test_docs_carry_the_generated_schema() -> None:
    """docs/signaling.schema.json is regenerated from the models (python -m signaling.protocol)."""
    path = DOCS.with_name("signaling.schema.json")
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(json_schema()))


def test_encode_is_compact_json() -> None:
    assert json.loads(encode(Ack(re="7"))) == {"type": "ack", "re": "7"}
