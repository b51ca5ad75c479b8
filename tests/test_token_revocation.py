"""Revoking is final, and one client id pairs with one store, even when requests race."""

import threading

import requests

from chalicelib.security import tokens
from tests.bitid_client import BitIdClient


def _race(requests_to_send: list[tuple[str, dict]]) -> list[requests.Response]:
    """Post every (url, body) at the same moment, each from its own thread."""
    barrier = threading.Barrier(len(requests_to_send))
    responses: list = [None] * len(requests_to_send)

    def send(number: int, url: str, body: dict) -> None:
        barrier.wait()
        responses[number] = requests.post(url, json=body)

    threads = [threading.Thread(target=send, args=(n, *request)) for n, request in enumerate(requests_to_send)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def test_concurrent_claims_never_pair_one_client_id_with_two_stores(api_url, store, other_store):
    rounds_with_two_stores = 0
    for _ in range(10):
        client = BitIdClient(api_url)
        codes = [tokens.create_pairing_code(s.store_id, "merchant").pairing_code for s in (store, other_store)]
        responses = _race([(f"{api_url}/tokens", {"id": client.sin, "pairingCode": code}) for code in codes])
        won = [response for response in responses if response.status_code == 200]
        assert len(won) >= 1, [response.text for response in responses]
        rounds_with_two_stores += len(won) > 1
    assert rounds_with_two_stores == 0


def _minted_code(merchant: BitIdClient) -> str:
    response = merchant.post("/tokens", {"facade": "pos", "label": "Till 9"})
    assert response.status_code == 200, response.text
    return response.json()["data"][0]["pairingCode"]


def _claim(api_url: str, code: str) -> requests.Response:
    return requests.post(f"{api_url}/tokens", json={"id": BitIdClient(api_url).sin, "pairingCode": code})


def test_revoking_a_token_revokes_the_codes_its_client_made(api_url, merchant, store):
    code = _minted_code(merchant)
    assert code in {token.pairing_code for token in tokens.for_store(store.store_id)}

    tokens.revoke(merchant.token, store.store_id)

    assert code not in {token.pairing_code for token in tokens.for_store(store.store_id)}
    refused = _claim(api_url, code)
    assert refused.status_code == 400
    assert refused.json() == {"error": "The specified pairingCode has been revoked"}


def test_a_code_the_revocation_missed_cannot_bring_its_maker_back(api_url, merchant, store):
    """As when the code was made while the revocation ran, or the index had not listed it yet."""
    from chalicelib.models import TokenModel

    code = _minted_code(merchant)
    TokenModel.get(merchant.token).update(actions=[TokenModel.status.set(TokenModel.REVOKED)])

    refused = _claim(api_url, code)

    assert refused.status_code == 400
    assert refused.json() == {"error": "The specified pairingCode has been revoked"}


def test_codes_made_on_the_store_page_outlive_a_revoked_client(api_url, merchant, store):
    code = tokens.create_pairing_code(store.store_id, "pos").pairing_code
    tokens.revoke(merchant.token, store.store_id)
    assert _claim(api_url, code).status_code == 200
