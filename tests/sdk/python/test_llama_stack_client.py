"""The official Python llama-stack-client 0.7.x against the real server."""
import json

import pytest
from llama_stack_client import BadRequestError, LlamaStackClient, NotFoundError

from conftest import MODEL_ID, SLASH_MODEL_ID


@pytest.fixture(scope="module")
def client(base_url, access_token):
    return LlamaStackClient(base_url=base_url, api_key=access_token, max_retries=0, timeout=120)


def test_models_list_carries_llama_stack_metadata(client):
    models = {m.id: m for m in client.models.list()}
    assert {MODEL_ID, SLASH_MODEL_ID} <= set(models)
    meta = models[MODEL_ID].custom_metadata
    assert meta["model_type"] == "llm"
    assert meta["provider_id"] and meta["provider_resource_id"]


def test_model_retrieve_with_slash_in_the_id(client):
    # The Python SDK percent-encodes the slash into one path segment.
    model = client.models.retrieve(SLASH_MODEL_ID)
    assert model.identifier == SLASH_MODEL_ID
    assert model.model_type == "llm"


def test_chat_completion(client):
    reply = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Name three primary colors."}], max_tokens=12
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens == 35
    assert reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_chat_completion_streamed(client):
    stream = client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": "Name three primary colors."}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text
    assert finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens <= 12


def test_completion(client):
    out = client.completions.create(model=MODEL_ID, prompt="The capital of France is", max_tokens=6)
    assert out.choices[0].text
    assert out.choices[0].finish_reason in ("stop", "length")


def test_completion_logprobs_as_the_sdk_types_them(client):
    # The Llama Stack SDK types `logprobs` as a boolean: `False` asks for nothing, `True` for the chosen tokens'.
    out = client.completions.create(model=MODEL_ID, prompt="The capital of France is", max_tokens=3, logprobs=False)
    assert out.choices[0].text
    assert out.choices[0].logprobs is None
    out = client.completions.create(model=MODEL_ID, prompt="The capital of France is", max_tokens=3, logprobs=True)
    logprobs = out.choices[0].logprobs
    assert "".join(logprobs.tokens) == out.choices[0].text
    assert len(logprobs.token_logprobs) == 3 and all(lp <= 0 for lp in logprobs.token_logprobs)


def test_tool_choice_none_answers_without_the_tools(client):
    weather = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    reply = client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": "Say hi."}],
        tools=[weather],
        tool_choice="none",
        max_tokens=4,
        temperature=0,
    )
    assert reply.choices[0].message.content
    assert not reply.choices[0].message.tool_calls


def test_tool_round_trip(client):
    """The Llama Stack client's chat completions with tools: the call parsed into its tool-call type, the
    tool's answer sent back, a text answer (the conversation makes the 135M model call; see test_openai_sdk)."""
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

    def answered(call_id, city, result):
        call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
        return [{"role": "assistant", "content": None, "tool_calls": [call]}, {"role": "tool", "tool_call_id": call_id, "content": result}]

    messages = [{"role": "user", "content": "Weather in Paris?"}, *answered("call_1", "Paris", "15 C"),
                {"role": "assistant", "content": "18 C."}, {"role": "user", "content": "Weather in Rome?"},
                *answered("call_2", "Rome", "12 C"), {"role": "assistant", "content": "12 C."},
                {"role": "user", "content": "Weather in London?"}]
    reply = client.chat.completions.create(model=MODEL_ID, messages=messages, tools=[weather], temperature=0, max_tokens=40)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "9 C, rain"},
    ]
    final = client.chat.completions.create(model=MODEL_ID, messages=messages, tools=[weather], temperature=0, max_tokens=40)
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls


def test_unknown_model_is_not_found(client):
    with pytest.raises(NotFoundError):
        client.models.retrieve("no-such-model")
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])


def test_bad_body_is_bad_request(client):
    with pytest.raises(BadRequestError):
        client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=5
        )
    with pytest.raises(BadRequestError):
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], n=9)
