"""AudioFrameTemplate: byte-for-byte equal to compact json.dumps of the full message."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.hotpath import AudioFrameTemplate

COMPACT = (",", ":")

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
field_sets = st.dictionaries(st.text(max_size=12), json_values, max_size=6)


def _reference(fields: dict[str, Any], audio_field: str, chunk: bytes, ensure_ascii: bool = True) -> str:
    doc = dict(fields)
    doc[audio_field] = base64.b64encode(chunk).decode("ascii")
    return json.dumps(doc, separators=COMPACT, ensure_ascii=ensure_ascii)


@settings(max_examples=200, deadline=None)
@given(
    fields=field_sets,
    audio_field=st.text(max_size=12),
    chunk=st.binary(max_size=2048),
    ensure_ascii=st.booleans(),
    audio_in_fields=st.booleans(),
)
def test_encode_equals_json_dumps_for_any_fields_and_payload(
    fields: dict[str, Any], audio_field: str, chunk: bytes, ensure_ascii: bool, audio_in_fields: bool
) -> None:
    if audio_in_fields:
        fields = {**fields, audio_field: None}  # the audio field keeps this position
    t = AudioFrameTemplate(fields, audio_field, ensure_ascii=ensure_ascii)
    want = _reference(fields, audio_field, chunk, ensure_ascii)
    assert t.encode_str(chunk) == want
    assert t.encode(chunk) == want
    assert t.encode_bytes(chunk) == want.encode("utf-8")


@pytest.mark.parametrize("size", [0, 1, 2, 3, 511, 512, 1024, 4096, 32000])
def test_seed_stt_message_for_common_chunk_sizes(size: int) -> None:
    """The ElevenLabs STT message of seed 000, audio field in the middle."""
    fields = {"message_type": "input_audio_chunk", "audio_base_64": "", "commit": False, "sample_rate": 16000}
    t = AudioFrameTemplate(fields, "audio_base_64")
    chunk = bytes(i % 251 for i in range(size))
    assert t.encode(chunk) == _reference(fields, "audio_base_64", chunk)
    assert t.prefix == '{"message_type":"input_audio_chunk","audio_base_64":"'
    assert t.suffix == '","commit":false,"sample_rate":16000}'
    msg = json.loads(t.encode_str(chunk))
    assert base64.b64decode(msg["audio_base_64"]) == chunk


def test_as_bytes_makes_encode_return_bytes() -> None:
    t = AudioFrameTemplate({"type": "audio", "note": "héllo"}, "data", as_bytes=True, ensure_ascii=False)
    out = t.encode(b"\x00\x01")
    assert isinstance(out, bytes)
    assert out == _reference({"type": "audio", "note": "héllo"}, "data", b"\x00\x01", False).encode("utf-8")


def test_encode_does_not_call_json_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 000's check: the hot path does no JSON serialisation."""
    t = AudioFrameTemplate({"a": 1}, "audio")

    def forbidden(*_a: object, **_k: object) -> str:
        raise AssertionError("json.dumps called on the hot path")

    monkeypatch.setattr(json, "dumps", forbidden)
    assert t.encode(b"xyz") == '{"a":1,"audio":"eHl6"}'


def test_fields_json_cannot_encode_fail_at_construction() -> None:
    with pytest.raises(TypeError):
        AudioFrameTemplate({"when": object()}, "audio")
    with pytest.raises(TypeError, match="audio_field"):
        AudioFrameTemplate({}, 7)  # type: ignore[arg-type]


def test_fields_are_copied_so_later_changes_do_not_leak_in() -> None:
    fields = {"a": 1}
    t = AudioFrameTemplate(fields, "audio")
    fields["a"] = 2
    assert t.encode(b"") == '{"a":1,"audio":""}'


def test_the_binascii_fallback_gives_the_same_output() -> None:
    """Without pybase64 (the optional SIMD encoder; its import blocked here) the stdlib path produces the
    identical frame, as str and as bytes."""
    code = (
        "import json, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'pybase64': raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from infra.hotpath import frames\n"
        "assert not frames.SIMD_BASE64\n"
        "fields = {'message_type': 'input_audio_chunk', 'audio_base_64': '', 'note': 'h\\u00e9llo'}\n"
        "chunk = bytes(range(256)) * 4\n"
        "import base64\n"
        "want = json.dumps({**fields, 'audio_base_64': base64.b64encode(chunk).decode()},\n"
        "                  separators=(',', ':'), ensure_ascii=False)\n"
        "for as_bytes in (False, True):\n"
        "    t = frames.AudioFrameTemplate(fields, 'audio_base_64', as_bytes=as_bytes, ensure_ascii=False)\n"
        "    assert t.encode(chunk) == (want.encode('utf-8') if as_bytes else want)\n"
        "    assert t.encode_str(chunk) == want and t.encode_bytes(chunk) == want.encode('utf-8')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_simd_encoder_is_used_when_installed() -> None:
    """The hotpath extra installs pybase64; CI must exercise the fast path, not silently the fallback."""
    from infra.hotpath import frames

    assert frames.SIMD_BASE64
