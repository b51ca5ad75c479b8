"""The public URL wherever the service runs on AWS: signatures verify, invoice links point back.

The Lambda handler itself (`app.app(event, context)`) gets API Gateway REST
proxy events for the execute-api URL with its stage, a custom domain with a
base path, one without, and CloudFront in front with PUBLIC_BASE_URL; and an
HTTP API's payload format 1.0 events, on its execute-api URL and a custom domain.
"""

import json
import re

import pytest

from tests.lambda_events import DEPLOYMENTS, EXECUTE_API_HOST, LambdaClient

# What a client configured with another base URL than the real one would sign.
_WRONG_BASE_URLS = {
    "execute-api": f"https://{EXECUTE_API_HOST}",
    "domain-base-path": "https://pay.example.com",
    "domain-root": "https://pay.example.com/api",
    "cloudfront": f"https://{EXECUTE_API_HOST}/api",
    "http-execute-api": f"https://{EXECUTE_API_HOST}/api",
    "http-domain-base-path": "https://pay.example.com",
}


@pytest.fixture(params=DEPLOYMENTS, ids=lambda deployment: deployment.name)
def client(request, chalice_app, monkeypatch):
    from chalicelib.settings import get_settings

    deployment = request.param
    if deployment.sets_public_base_url:
        monkeypatch.setenv("PUBLIC_BASE_URL", deployment.client_base_url + "/")
    get_settings.cache_clear()
    yield LambdaClient(chalice_app, deployment)
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    get_settings.cache_clear()


@pytest.fixture
def merchant_token(client, store):
    from chalicelib.security import tokens

    return client.claim(tokens.create_pairing_code(store.store_id, "merchant").pairing_code)


def _create_invoice(client, token, **signing) -> tuple[int, dict]:
    payload = {"price": 12.5, "currency": "USD", "token": token, "orderId": "order-7", "itemDesc": "A mug"}
    return client.request("POST", "/invoices", payload=payload, **signing)


def test_signed_invoice_creation_links_to_the_public_url(client, merchant_token):
    status, body = _create_invoice(client, merchant_token)

    assert status == 200, body
    invoice = body["data"]
    assert invoice["url"] == f"{client.deployment.client_base_url}/invoice?id={invoice['id']}"


def test_signed_reads_with_a_query_verify_and_link_to_the_public_url(client, merchant_token):
    invoice_id = _create_invoice(client, merchant_token)[1]["data"]["id"]

    status, one = client.request(
        "GET", "/invoices/{invoice_id}", {"invoice_id": invoice_id}, query=[("token", merchant_token)]
    )
    assert status == 200, one
    assert one["data"]["url"] == f"{client.deployment.client_base_url}/invoice?id={invoice_id}"

    status, found = client.request("GET", "/invoices", query=[("status", "new"), ("token", merchant_token)])
    assert status == 200, found
    assert [invoice["url"] for invoice in found["data"] if invoice["id"] == invoice_id] == [one["data"]["url"]]


def test_a_signature_over_another_base_url_is_refused(client, merchant_token):
    status, body = _create_invoice(client, merchant_token, signed_base_url=_WRONG_BASE_URLS[client.deployment.name])

    assert status == 401
    assert "Invalid signature" in body["error"]


def test_the_pages_their_static_files_and_the_checkouts_poll_link_to_the_public_url(client, merchant_token):
    from tests.lambda_events import LambdaContext, proxy_event

    invoice = _create_invoice(client, merchant_token)[1]["data"]
    event = proxy_event(
        client.deployment, "GET", "/invoice", query=[("id", invoice["id"])], headers={"Accept": "text/html"}
    )
    page = client.app(event, LambdaContext("APIHandler", 30))

    assert page["statusCode"] == 200, page["body"][:300]
    assert page["headers"]["Content-Type"].startswith("text/html")
    base = client.deployment.client_base_url
    assert f'data-status-url="{base}/invoice/status?id={invoice["id"]}"' in page["body"]
    poll = proxy_event(client.deployment, "GET", "/invoice/status", query=[("id", invoice["id"])])
    answer = client.app(poll, LambdaContext("APIHandler", 30))
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["status"] == "new"
    # The checkout carries its stylesheet; the merchant's pages link it.
    login = client.app(proxy_event(client.deployment, "GET", "/login"), LambdaContext("APIHandler", 30))
    assert f'href="{base}/static/paylambda.css?v=' in login["body"]


def _cookies(response: dict) -> dict[str, str]:
    set_cookies = response.get("multiValueHeaders", {}).get("Set-Cookie") or [response["headers"].get("Set-Cookie")]
    return dict(cookie.split(";")[0].split("=", 1) for cookie in set_cookies if cookie)


def test_signing_in_through_the_form_works_on_every_front(client, user):
    """A form's body: base64-encoded by an HTTP API (not a text type), as is by a REST API."""
    from urllib.parse import urlencode

    from tests.conftest import PASSWORD
    from tests.lambda_events import LambdaContext, proxy_event

    page = client.app(
        proxy_event(client.deployment, "GET", "/login", headers={"Accept": "text/html"}),
        LambdaContext("APIHandler", 30),
    )
    assert page["statusCode"] == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page["body"]).group(1)
    form = urlencode({"login": user.login, "password": PASSWORD, "csrf_token": token})
    headers = {
        "Accept": "text/html",
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": "; ".join(f"{name}={value}" for name, value in _cookies(page).items()),
    }
    answer = client.app(
        proxy_event(client.deployment, "POST", "/login", body=form, headers=headers), LambdaContext("APIHandler", 30)
    )

    assert answer["statusCode"] == 303, answer["body"][:300]
    assert answer["headers"]["Location"].startswith(client.deployment.client_base_url)
    assert len(_cookies(answer)) >= 2  # the session and the device cookie
