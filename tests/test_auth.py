"""Rebuilding the URL a client signed, and authenticating requests with it."""

import hashlib
import json
from urllib.parse import quote, urlencode, urlsplit

import ecdsa
import pytest
import requests
from ecdsa.util import sigencode_der

from chalicelib import settings
from chalicelib.errors import Forbidden, Unauthorized
from chalicelib.security import auth, tokens
from chalicelib.web import MAX_BODY_BYTES, ApiRequest


def _request(path="/invoices", route_path=None, query=(), host="pay.example.com", proto="https", **headers):
    return ApiRequest(
        method="GET",
        headers={"host": host, "x-forwarded-proto": proto, **headers},
        path=path,
        route_path=route_path or path,
        query=list(query),
    )


def test_candidates_keep_the_stage_prefix_and_query_order():
    request = _request(
        path="/api/invoices", route_path="/invoices", query=[("status", "new"), ("token", "abc"), ("limit", "5")]
    )
    urls = auth.candidate_urls(request)
    assert urls[0] == "https://pay.example.com/api/invoices?status=new&token=abc&limit=5"
    assert "https://pay.example.com:443/api/invoices?status=new&token=abc&limit=5" in urls


def test_candidates_try_the_token_first_and_last_when_the_order_is_lost():
    request = _request(query=[("status", "new"), ("token", "abc"), ("limit", "5")])
    urls = auth.candidate_urls(request)
    assert urls.index("https://pay.example.com/invoices?status=new&token=abc&limit=5") == 0
    assert "https://pay.example.com/invoices?token=abc&status=new&limit=5" in urls
    assert "https://pay.example.com/invoices?status=new&limit=5&token=abc" in urls


def test_candidates_cover_both_space_encodings():
    request = _request(query=[("itemDesc", "two words (x)"), ("token", "t")])
    urls = auth.candidate_urls(request)
    assert "https://pay.example.com/invoices?itemDesc=two+words+%28x%29&token=t" in urls
    assert "https://pay.example.com/invoices?itemDesc=two%20words%20(x)&token=t" in urls


def test_candidates_with_an_explicit_default_port_in_the_host_header():
    urls = auth.candidate_urls(_request(host="127.0.0.1:80", proto="http"))
    assert urls == ["http://127.0.0.1:80/invoices", "http://127.0.0.1/invoices"]


def test_candidates_with_a_non_default_port():
    assert auth.candidate_urls(_request(host="127.0.0.1:8000", proto="http")) == ["http://127.0.0.1:8000/invoices"]


def test_candidates_are_bounded():
    query = [("q", "a b!"), ("token", "t"), ("x", "~*'")]
    assert 1 <= len(auth.candidate_urls(_request(query=query))) <= auth.MAX_VERIFICATIONS


def test_public_base_url_overrides_scheme_host_and_prefix(monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://shop.example.com/pay/")
    settings.get_settings.cache_clear()
    try:
        request = _request(path="/prod/invoices/abc", route_path="/invoices/abc", host="abc.execute-api.aws")
        assert auth.candidate_urls(request) == ["https://shop.example.com/pay/invoices/abc"]
        assert request.base_url == "https://shop.example.com/pay"
    finally:
        monkeypatch.delenv("PUBLIC_BASE_URL")
        settings.get_settings.cache_clear()


class Client:
    """A BitId client signing exactly like the BitPay libraries do."""

    def __init__(self):
        self.key = ecdsa.SigningKey.generate(curve=ecdsa.SECP256k1)
        self.public_key = self.key.get_verifying_key().to_string("compressed").hex()

    @property
    def sin(self):
        from chalicelib.security.identity import sin_from_public_key

        return sin_from_public_key(self.public_key)

    def headers(self, signed_message: str) -> dict:
        signature = self.key.sign(signed_message.encode(), hashfunc=hashlib.sha256, sigencode=sigencode_der)
        return {"x-identity": self.public_key, "x-signature": signature.hex()}


@pytest.fixture
def merchant(store):
    client = Client()
    token = tokens.request_pairing(client.sin, "merchant", "test")
    tokens.approve(token.pairing_code, store.store_id)
    client.token = token.token
    return client


def test_signed_get_with_node_style_query(api_url, merchant):
    query = urlencode([("token", merchant.token), ("itemCode", "a b")], quote_via=quote)
    url = f"{api_url}/invoices?{query}"
    response = requests.get(url, headers=merchant.headers(url))
    assert response.status_code == 200, response.text


def test_signed_get_with_python_style_query_and_explicit_default_port(api_url, merchant):
    """The client signed http://host:80/... while its Host header carries no port."""
    query = urlencode([("itemCode", "a b"), ("token", merchant.token)])
    prefix = urlsplit(api_url).path
    signed = f"http://127.0.0.1:80{prefix}/invoices?{query}"
    response = requests.get(f"{api_url}/invoices?{query}", headers={"Host": "127.0.0.1", **merchant.headers(signed)})
    assert response.status_code == 200, response.text


def test_signed_query_reordered_on_the_way_is_accepted(api_url, merchant):
    """bitpay 8 signs with the token first; a gateway may hand the parameters over in another order."""
    signed = f"{api_url}/invoices?token={merchant.token}&status=new&limit=5"
    sent = f"{api_url}/invoices?status=new&limit=5&token={merchant.token}"
    response = requests.get(sent, headers=merchant.headers(signed))
    assert response.status_code == 200, response.text


def test_signature_over_another_url_is_refused(api_url, merchant):
    url = f"{api_url}/invoices?token={merchant.token}"
    response = requests.get(url, headers=merchant.headers(url + "&status=new"))
    assert response.status_code == 401
    assert "signature" in response.json()["error"]


def test_signed_post_covers_the_body(api_url, merchant):
    body = json.dumps({"price": 5, "currency": "USD", "token": merchant.token})
    url = f"{api_url}/invoices"
    tampered = body.replace('"price": 5', '"price": 1')
    response = requests.post(url, data=tampered, headers=merchant.headers(url + body))
    assert response.status_code == 401
    response = requests.post(url, data=body, headers=merchant.headers(url + body))
    assert response.status_code == 200, response.text


def test_a_signed_get_with_a_body_over_the_limit_is_refused_before_its_signature(api_url, merchant):
    url = f"{api_url}/invoices?token={merchant.token}"
    body = "x" * (MAX_BODY_BYTES + 1)
    response = requests.get(url, data=body, headers=merchant.headers(url + body))
    assert response.status_code == 400
    assert "larger than" in response.json()["error"]
    within = "x" * MAX_BODY_BYTES
    response = requests.get(url, data=within, headers=merchant.headers(url + within))
    assert response.status_code == 200, response.text


def test_token_of_another_key_is_refused(api_url, merchant):
    intruder = Client()
    url = f"{api_url}/invoices?token={merchant.token}"
    response = requests.get(url, headers=intruder.headers(url))
    assert response.status_code == 401
    assert "does not belong" in response.json()["error"]


def test_unsigned_use_of_a_bound_token_is_refused(api_url, merchant):
    response = requests.get(f"{api_url}/invoices?token={merchant.token}")
    assert response.status_code == 401
    assert "sign" in response.json()["error"]


def test_stale_signature_headers_do_not_fail_public_routes(api_url):
    stale = Client().headers("https://elsewhere.example.com/rates")
    response = requests.get(f"{api_url}/rates", headers=stale)
    assert response.status_code == 200
    response = requests.post(f"{api_url}/tokens", json={"id": Client().sin, "facade": "pos"}, headers=stale)
    assert response.status_code == 200, response.text


def test_malformed_identity_headers_get_401(api_url, merchant):
    url = f"{api_url}/invoices?token={merchant.token}"
    for headers in ({"x-identity": "zz", "x-signature": "00"}, {"x-identity": merchant.public_key}):
        response = requests.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]


def test_pending_and_unknown_tokens(store):
    client = Client()
    pending = tokens.request_pairing(client.sin, "merchant")
    url = f"https://pay.example.com/invoices?token={pending.token}"
    request = _request(query=[("token", pending.token)], **client.headers(url))
    with pytest.raises(Forbidden, match="pairingCode="):
        auth.authenticate(request, ("merchant",))
    request = _request(query=[("token", "nope")], **client.headers(url.replace(pending.token, "nope")))
    with pytest.raises(Unauthorized, match="Unknown token"):
        auth.authenticate(request, ("merchant",))
