"""The Ollama test server speaks the documented API (issue 15): model management with streamed progress,
structured outputs and tool calls that validate against their schemas, logprobs, capability refusals, the
final chunk's fields, and the OpenAI-compatible /v1 driven by the real ``openai`` SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import ollama
import pytest
from ollama_testutil import EMBED, LLM
from pydantic import BaseModel

from infra.testing.ollama_server import OllamaTestServer


@pytest.fixture
def c(server: OllamaTestServer) -> Any:
    client = ollama.Client(server.url)
    yield client
    client.close()


def names(client: Any) -> set[str]:
    return {m.model for m in client.list().models}


def test_pull_streams_progress_and_the_model_then_appears_in_tags(c: Any) -> None:
    assert "gemma4:latest" not in names(c)
    steps = list(c.pull("gemma4", stream=True))
    assert [s.status for s in steps[:1]] == ["pulling manifest"] and steps[-1].status == "success"
    layer = [s for s in steps if s.digest]
    assert layer and layer[-1].completed == layer[-1].total and layer[0].completed == 0
    assert "gemma4:latest" in names(c)
    assert c.pull("qwen3:8b").status == "success" and "qwen3:8b" in names(c)


def test_create_copy_push_delete(c: Any) -> None:
    steps = [s.status for s in c.create(model="mario", from_=LLM, system="You are Mario.", stream=True)]
    assert (
        steps[0] == "reading model metadata" and steps[-1] == "success" and "creating system layer" in steps
    )
    shown = c.show("mario")
    assert "You are Mario." in (shown.modelfile or "") and "completion" in (shown.capabilities or [])
    digest = {m.model: m.digest for m in c.list().models}
    assert digest["mario:latest"] != digest[LLM], "a created model has its own manifest digest"
    assert c.copy("mario", "luigi").status == "success" and "luigi:latest" in names(c)
    assert [s.status for s in c.push("luigi", stream=True)][-1] == "success"
    assert c.delete("luigi").status == "success" and "luigi:latest" not in names(c)
    with pytest.raises(ollama.ResponseError) as missing:
        c.delete("luigi")
    assert missing.value.status_code == 404
    with pytest.raises(ollama.ResponseError):
        c.copy("nobody", "somebody")


class Weather(BaseModel):
    city: str
    temperature_c: float
    conditions: list[str]
    windy: bool


def test_structured_outputs_validate_against_the_given_schema(c: Any) -> None:
    schema = Weather.model_json_schema()
    for i in range(5):
        r = c.chat(LLM, [{"role": "user", "content": f"weather {i}"}], format=schema)
        jsonschema.validate(json.loads(r.message.content), schema)
        Weather.model_validate_json(r.message.content)
    nested = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/I"}, "minItems": 2}},
        "required": ["items"],
        "$defs": {"I": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 9},
                                                         "k": {"enum": ["a", "b"]}}, "required": ["n", "k"]}},
    }  # fmt: skip
    g = c.generate(LLM, "list", format=nested)
    jsonschema.validate(json.loads(g.response), nested)


def add_two_numbers(a: int, b: int) -> int:
    """
    Add two numbers

    Args:
      a: The first number
      b: The second number

    Returns:
      int: The sum of the two numbers
    """
    return a + b


def test_tool_call_arguments_validate_against_each_tools_parameters(c: Any) -> None:
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city", "unit"],
            },
        },
    }
    from ollama._utils import convert_function_to_tool

    tools: list[Any] = [weather, add_two_numbers]
    specs = {"get_weather": weather["function"]["parameters"]}
    specs["add_two_numbers"] = convert_function_to_tool(add_two_numbers).model_dump(exclude_none=True)[
        "function"
    ]["parameters"]
    seen = set()
    for i in range(8):
        r = c.chat(LLM, [{"role": "user", "content": f"q{i}"}], tools=tools)
        for call in r.message.tool_calls or []:
            seen.add(call.function.name)
            jsonschema.validate(dict(call.function.arguments), specs[call.function.name])
    assert seen == {"get_weather", "add_two_numbers"}
    answer = c.chat(
        LLM, [{"role": "user", "content": "q"}, {"role": "tool", "content": "5", "tool_name": "x"}]
    )
    assert answer.message.content and not answer.message.tool_calls


def test_logprobs_for_every_token(c: Any) -> None:
    r = c.chat(LLM, [{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=3)
    assert r.logprobs and "".join(lp.token for lp in r.logprobs) == r.message.content
    assert all(lp.logprob <= 0 and len(lp.top_logprobs or []) == 3 for lp in r.logprobs)
    parts = list(c.generate(LLM, "hi", logprobs=True, stream=True))
    assert [lp.token for p in parts for lp in (p.logprobs or [])] == [p.response for p in parts if p.response]


def test_capability_refusals_match_ollama(c: Any) -> None:
    for call, message in (
        (lambda: c.chat(LLM, [{"role": "user", "content": "x"}], think=True), "does not support thinking"),
        (lambda: c.generate(LLM, "def f(", suffix="return 1"), "does not support insert"),
        (lambda: c.generate(EMBED, "x"), "does not support generate"),
    ):
        with pytest.raises(ollama.ResponseError, match=message) as err:
            call()
        assert err.value.status_code == 400
    c.pull("deepseek-r1")
    assert c.chat("deepseek-r1", [{"role": "user", "content": "x"}], think=True).message.thinking
    assert "thinking" in (c.show("deepseek-r1").capabilities or [])


def test_the_final_chunk_has_the_documented_fields(c: Any) -> None:
    c.generate(LLM, "warm it up")
    documented = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration")
    documented += ("eval_count", "eval_duration", "done_reason", "created_at")
    generated = list(c.generate(LLM, "final", stream=True))[-1]
    chatted = list(c.chat(LLM, [{"role": "user", "content": "f"}], stream=True))[-1]
    for final in (generated, chatted):
        d = final.model_dump(exclude_none=True)
        for k in documented:
            assert k in d, k
        assert final.done and d["load_duration"] > 0


# ---------------------------------------------------------------------------------------------- OpenAI /v1


@pytest.fixture
def oa(server: OllamaTestServer) -> Any:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama", max_retries=0)
    yield client
    client.close()


def test_openai_sdk_chat_plain_and_streamed_agree(oa: Any, c: Any) -> None:
    msgs = [{"role": "user", "content": "Say this is a test"}]
    r = oa.chat.completions.create(model=LLM, messages=msgs, temperature=0)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens > 0
    stream = oa.chat.completions.create(
        model=LLM, messages=msgs, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    native = c.chat(LLM, msgs, options={"temperature": 0})
    assert native.message.content == text, "the same simulation behind both APIs"


def test_openai_sdk_tools_and_json_schema(oa: Any) -> None:
    params = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    r = oa.chat.completions.create(
        model=LLM,
        messages=[{"role": "user", "content": "call it"}],
        tools=[{"type": "function", "function": {"name": "f", "parameters": params}}],
    )
    (call,) = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "f"
    jsonschema.validate(json.loads(call.function.arguments), params)
    schema = Weather.model_json_schema()
    rf = {"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}
    out = oa.chat.completions.create(
        model=LLM, messages=[{"role": "user", "content": "w"}], response_format=rf
    )
    Weather.model_validate_json(out.choices[0].message.content)


def test_openai_sdk_completions_embeddings_and_models(oa: Any, c: Any) -> None:
    comp = oa.completions.create(model=LLM, prompt="Once upon a time", max_tokens=5)
    assert comp.object == "text_completion" and comp.choices[0].finish_reason == "length"
    chunks = oa.completions.create(model=LLM, prompt="Once upon a time", max_tokens=5, stream=True)
    streamed = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert streamed == comp.choices[0].text
    emb = oa.embeddings.create(model=EMBED, input=["why is the sky blue?", "why is the grass green?"])
    native = c.embed(EMBED, ["why is the sky blue?", "why is the grass green?"]).embeddings
    assert [d.index for d in emb.data] == [0, 1]
    assert all(
        abs(a - b) < 1e-6
        for d, n in zip(emb.data, native, strict=True)
        for a, b in zip(d.embedding, n, strict=True)
    )
    floats = oa.embeddings.create(model=EMBED, input="x", encoding_format="float")
    assert len(floats.data[0].embedding) == len(native[0])
    ids = {m.id for m in oa.models.list()}
    assert {LLM, EMBED} <= ids and oa.models.retrieve(LLM).id == LLM
    openai = pytest.importorskip("openai")
    with pytest.raises(openai.NotFoundError):
        oa.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])


def test_v1_streams_are_server_sent_events(server: OllamaTestServer) -> None:
    body = {"model": LLM, "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln]
    assert all(ln.startswith("data: ") for ln in lines) and lines[-1] == "data: [DONE]"
