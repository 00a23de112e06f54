"""The official OpenAI Python SDK against the real server's OpenAI-compatible routes."""
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
            model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], response_format={"type": "json_object"}
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
