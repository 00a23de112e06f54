"""The SDKs' own error classes for authentication and authorization refusals.

A missing or invalid `api_key` is a 401 (`AuthenticationError`); a valid token from the real
authorization server without the model's scope is a 403 (`PermissionDeniedError`).
"""
import openai
import pytest
from llama_stack_client import AuthenticationError, LlamaStackClient, PermissionDeniedError

from conftest import MODEL_ID

MESSAGES = [{"role": "user", "content": "Hi"}]


def test_llama_stack_client_without_or_with_a_bad_key(base_url, monkeypatch):
    monkeypatch.delenv("LLAMA_STACK_CLIENT_API_KEY", raising=False)
    for key in (None, "not-a-token", "eyJhbGciOiJub25lIn0.e30."):
        client = LlamaStackClient(base_url=base_url, api_key=key, max_retries=0)
        with pytest.raises(AuthenticationError) as refused:
            client.models.list()
        assert refused.value.status_code == 401
        assert refused.value.response.headers["www-authenticate"].startswith("Bearer ")


def test_llama_stack_client_without_the_model_scope(base_url, noscope_token):
    client = LlamaStackClient(base_url=base_url, api_key=noscope_token, max_retries=0)
    assert client.models.list() == []  # authenticated, but no model is listed
    with pytest.raises(PermissionDeniedError) as refused:
        client.chat.completions.create(model=MODEL_ID, messages=MESSAGES, max_tokens=2)
    assert refused.value.status_code == 403
    assert 'scope="model_smollm2_135m"' in refused.value.response.headers["www-authenticate"]


def test_openai_sdk_refusals(base_url, noscope_token):
    bad = openai.OpenAI(base_url=f"{base_url}/v1", api_key="not-a-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=MODEL_ID, messages=MESSAGES, max_tokens=2)
    unscoped = openai.OpenAI(base_url=f"{base_url}/v1", api_key=noscope_token, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        unscoped.chat.completions.create(model=MODEL_ID, messages=MESSAGES, max_tokens=2)
