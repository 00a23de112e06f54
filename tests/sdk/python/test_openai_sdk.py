"""The official OpenAI Python SDK against the real server's OpenAI-compatible routes."""
import json

import openai
import pytest

from conftest import MODEL_ID


@pytest.fixture(scope="module")
def client(base_url, access_token):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=access_token, max_retries=0, timeout=120)


def test_models(client):
    assert MODEL_ID in {m.id for m in client.models.list()}


def test_chat_completion_and_stream(client):
    messages = [{"role": "user", "content": "Name three primary colors."}]
    reply = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=12, seed=1)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content
    streamed = ""
    usage = None
    for chunk in client.chat.completions.create(
        model=MODEL_ID, messages=messages, max_tokens=12, seed=1, stream=True, stream_options={"include_usage": True}
    ):
        if chunk.choices:
            streamed += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    # Greedy decoding: the streamed text is the non-streamed text.
    assert streamed == reply.choices[0].message.content
    assert usage.completion_tokens == reply.usage.completion_tokens


def test_completions(client):
    out = client.completions.create(model=MODEL_ID, prompt="One, two, three,", max_tokens=6)
    assert out.object == "text_completion"
    assert out.choices[0].text


def test_errors_map_to_sdk_exceptions(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], response_format={"type": "xml"}
        )


def test_logprobs_parse_into_the_sdks_types(client):
    messages = [{"role": "user", "content": "Name three primary colors."}]
    reply = client.chat.completions.create(
        model=MODEL_ID, messages=messages, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2
    )
    content = reply.choices[0].logprobs.content
    assert len(content) == 6
    assert "".join(bytes(t.bytes).decode() for t in content) == reply.choices[0].message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token for t in content)
    out = client.completions.create(model=MODEL_ID, prompt="One, two, three,", max_tokens=4, temperature=0, logprobs=1)
    assert "".join(out.choices[0].logprobs.tokens) == out.choices[0].text
    assert out.choices[0].logprobs.text_offset[0] == 0


def test_n_choices_parse_into_the_sdks_types(client):
    messages = [{"role": "user", "content": "Name three primary colors."}]
    reply = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=8, n=2, seed=5)
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.message.content for c in reply.choices)
    assert reply.usage.completion_tokens == reply.usage.total_tokens - reply.usage.prompt_tokens
    out = client.completions.create(model=MODEL_ID, prompt="One, two, three,", max_tokens=4, n=2, seed=5)
    assert [c.index for c in out.choices] == [0, 1]
    assert out.usage.completion_tokens <= 8


def test_streamed_n_choices_carry_their_index(client):
    messages = [{"role": "user", "content": "Name three primary colors."}]
    texts, finished, usage = {}, {}, None
    for chunk in client.chat.completions.create(
        model=MODEL_ID, messages=messages, max_tokens=8, n=2, seed=5, stream=True, stream_options={"include_usage": True}
    ):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished[choice.index] = choice.finish_reason
        usage = chunk.usage or usage
    plain = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=8, n=2, seed=5)
    # The same seed: the stream's choices are the plain answer's.
    assert texts == {c.index: c.message.content for c in plain.choices}
    assert set(finished) == {0, 1}
    assert usage.completion_tokens == plain.usage.completion_tokens


def test_a_prompt_list_is_answered_in_openais_order(client):
    prompts = ["The capital of France is", "One, two, three,"]
    out = client.completions.create(model=MODEL_ID, prompt=prompts, max_tokens=3, n=2, temperature=0, echo=True)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    for choice in out.choices:
        assert choice.text.startswith(prompts[choice.index // 2])


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _answered_call(call_id, city, result):
    call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
    return [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]


def test_tool_round_trip(client):
    """tools → the model's call as the SDK's ChatCompletionMessageToolCall → the tool's answer sent back →
    a text answer; streamed, the SDK's tool-call deltas join to the same call. The default 135M model calls
    the tool after two answered calls in the conversation (temperature 0); the subject is the shapes."""
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        *_answered_call("call_1", "Paris", "15 C"),
        {"role": "assistant", "content": "18 C."},
        {"role": "user", "content": "Weather in Rome?"},
        *_answered_call("call_2", "Rome", "12 C"),
        {"role": "assistant", "content": "12 C."},
        {"role": "user", "content": "Weather in London?"},
    ]
    reply = client.chat.completions.create(
        model=MODEL_ID, messages=messages, tools=[WEATHER_TOOL], temperature=0, max_tokens=40
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)

    name, arguments, finish = "", "", None
    for chunk in client.chat.completions.create(
        model=MODEL_ID, messages=messages, tools=[WEATHER_TOOL], temperature=0, max_tokens=40, stream=True
    ):
        delta = chunk.choices[0].delta
        assert not delta.content
        for piece in delta.tool_calls or []:
            assert piece.index == 0
            name += piece.function.name or ""
            arguments += piece.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, arguments, finish) == ("get_weather", call.function.arguments, "tool_calls")

    messages += [choice.message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "9 C, rain"}]
    final = client.chat.completions.create(
        model=MODEL_ID, messages=messages, tools=[WEATHER_TOOL], temperature=0, max_tokens=40
    )
    assert final.choices[0].message.tool_calls is None
    assert final.choices[0].message.content
    assert final.choices[0].finish_reason != "tool_calls"


def test_named_tool_choice_and_refused_tools(client):
    reply = client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": "What is the weather like in Paris today?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=24,
    )
    (call,) = reply.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    with pytest.raises(openai.BadRequestError, match="strict"):
        client.chat.completions.create(
            model=MODEL_ID,
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {**WEATHER_TOOL["function"], "strict": True}}],
        )


def test_structured_output_parses_into_a_pydantic_model(client):
    """`response_format` from a pydantic model (the SDK sends a strict `json_schema`): the grammar mask makes
    the answer parse into the model, greedy and with n=2 sampled choices; `json_object` gives a JSON object."""
    from typing import Literal

    from pydantic import BaseModel, Field

    class City(BaseModel):
        city: str = Field(max_length=24)
        country: Literal["France", "Italy", "Japan", "Peru"]
        population_millions: float

    messages = [{"role": "user", "content": "Name a large city, its country and population, as JSON."}]
    reply = client.chat.completions.parse(
        model=MODEL_ID, messages=messages, response_format=City, temperature=0, max_tokens=64
    )
    parsed = reply.choices[0].message.parsed
    assert isinstance(parsed, City), reply
    assert reply.choices[0].finish_reason == "stop"

    two = client.chat.completions.parse(
        model=MODEL_ID, messages=messages, response_format=City, temperature=1.0, seed=3, n=2, max_tokens=64
    )
    assert [type(c.message.parsed) for c in two.choices] == [City, City]

    reply = client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": 'Reply with a JSON object whose key "animal" names a farm animal.'}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=64,
    )
    assert isinstance(json.loads(reply.choices[0].message.content), dict)

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL_ID, messages=messages, response_format={"type": "json_schema"}, max_tokens=8
        )
    assert "json_schema" in str(refused.value)
