"""Shields, run-shield and moderations through the official Python llama-stack-client 0.7.x.

The default model stands in as the Llama Guard model (no Llama Guard weights can be downloaded here),
so these tests check the shapes the SDK parses and that scores are real probabilities, not verdicts.
"""
import pytest
from llama_stack_client import BadRequestError, LlamaStackClient, PermissionDeniedError

from conftest import MODEL_ID, SHIELD_ID


@pytest.fixture(scope="module")
def client(base_url, access_token):
    # Scoring runs a ~200-token prompt through the CPU model: allow more than the SDK's 60 s.
    return LlamaStackClient(base_url=base_url, api_key=access_token, max_retries=0, timeout=600)


def test_shields_list_and_retrieve(client):
    shields = client.shields.list()
    assert [s.identifier for s in shields] == [SHIELD_ID]
    shield = shields[0]
    assert shield.provider_id == "llama-guard"
    assert shield.provider_resource_id == MODEL_ID
    assert shield.type == "shield"
    assert client.shields.retrieve(SHIELD_ID).identifier == SHIELD_ID


def test_unknown_shield_is_a_bad_request(client):
    with pytest.raises(BadRequestError) as err:
        client.shields.retrieve("no-such-shield")
    assert err.value.body["error"]["message"] == "Shield 'no-such-shield' not found"
    with pytest.raises(BadRequestError) as err:
        client.safety.run_shield(shield_id="no-such-shield", messages=[{"role": "user", "content": "hi"}])
    assert "not served by provider" in err.value.body["error"]["message"]


def test_run_shield(client):
    response = client.safety.run_shield(
        shield_id=SHIELD_ID,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    if response.violation is not None:
        assert response.violation.violation_level == "error"
        assert response.violation.metadata["violation_type"] in ("S1", "S10", "S12")


def test_moderations_create(client):
    result = client.moderations.create(input="Hello there!", model=MODEL_ID)
    assert result.id.startswith("modr-")
    assert result.model == MODEL_ID
    assert len(result.results) == 1
    moderation = result.results[0]
    assert isinstance(moderation.flagged, bool)
    assert len(moderation.categories) == 14 and len(moderation.category_scores) == 14
    assert all(0.0 <= s <= 1.0 for s in moderation.category_scores.values())
    assert moderation.category_scores["Defamation"] == 0.0  # excluded from this shield
    assert sum(moderation.category_scores[n] for n in ("Violent Crimes", "Hate", "Sexual Content")) > 0.0


def test_moderations_validation(client):
    with pytest.raises(BadRequestError):
        client.moderations.create(input=[], model=MODEL_ID)
    with pytest.raises(BadRequestError) as err:
        client.moderations.create(input="hi", model="no-such-model")
    assert "No shield associated with provider_resource id no-such-model" in err.value.body["error"]["message"]


def test_shields_need_the_safety_scope(base_url, noscope_token):
    outsider = LlamaStackClient(base_url=base_url, api_key=noscope_token, max_retries=0)
    assert list(outsider.shields.list()) == []
    with pytest.raises(PermissionDeniedError):
        outsider.safety.run_shield(shield_id=SHIELD_ID, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(PermissionDeniedError):
        outsider.moderations.create(input="hi")
