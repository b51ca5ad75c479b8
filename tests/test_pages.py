"""The hosted pages over HTTP, as a browser without JavaScript uses them: forms, cookies, redirects.

Every test runs at the root and under the `/api` prefix (the `api_url` fixture).
"""

import base64
import hashlib
import html
import re
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from bitpay.client import Client as BitPayClient
from bitpay.exceptions import BitPayBitPayError
from bitpay.key_utils import generate_pem
from btcpay import BTCPayClient, crypto

from chalicelib.payments.wallet import Wallet
from tests.conftest import PASSWORD, new_wallet
from tests.pages_support import (
    browser,
    csrf_token,
    fresh_address,
    post_form,
    sign_in,
    signed_in,
    text_of,
    update_invoice,
)

XSS = "<script>alert(1)</script>"
# BIP32 test vector 1's master private key.
XPRV = "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi"


@pytest.fixture
def merchant(api_url, user) -> requests.Session:
    return signed_in(api_url, user.login)


def pairing_request(api_url: str, label: str | None = None) -> tuple[BitPayClient, str]:
    """A BitPay client asks for a merchant token; returns it and the pairing code it printed."""
    client = BitPayClient(api_uri=api_url, pem=generate_pem(), tokens={})
    if label is None:
        return client, client.create_token("merchant")
    response = requests.post(f"{api_url}/tokens", json={"id": client.client_id, "facade": "merchant", "label": label})
    client.tokens = {"merchant": response.json()["data"][0]["token"]}
    return client, response.json()["data"][0]["pairingCode"]


def approval_url(api_url: str, code: str) -> str:
    return f"{api_url}/api-access-request?pairingCode={code}"


def approve(session: requests.Session, api_url: str, code: str, store_id: str, decision="approve") -> requests.Response:
    return post_form(
        session,
        approval_url(api_url, code),
        f"{api_url}/api-access-request",
        pairingCode=code,
        store_id=store_id,
        decision=decision,
    )


def paired_client(api_url: str, merchant: requests.Session, store_id: str) -> BitPayClient:
    client, code = pairing_request(api_url)
    assert approve(merchant, api_url, code, store_id).status_code == 200
    return client


# Signing in and out


def test_a_stranger_is_sent_to_sign_in_and_brought_back(api_url, user, store):
    client, code = pairing_request(api_url)
    session = browser()
    page = session.get(approval_url(api_url, code), allow_redirects=False)
    assert page.status_code == 303
    location = urlsplit(page.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{api_url}/login"
    next_path = parse_qs(location.query)["next"][0]
    assert next_path == f"/api-access-request?pairingCode={code}"

    signed = sign_in(api_url, user.login, session=session, next_path=next_path)
    assert signed.status_code == 303
    assert signed.headers["Location"] == approval_url(api_url, code)
    assert client.client_id in session.get(signed.headers["Location"]).text


def test_the_session_cookie_is_http_only_same_site_and_secure_over_https(api_url, user):
    cookie = sign_in(api_url, user.login).headers["Set-Cookie"]
    assert "paylambda_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert f"Path={urlsplit(api_url).path or '/'}" in cookie

    session = browser()
    session.headers["X-Forwarded-Proto"] = "https"
    form = session.get(f"{api_url}/login")
    assert "Secure" in form.headers["Set-Cookie"]
    token = csrf_token(form)
    # A Secure cookie: the client would send it only over https, which this test server does not speak.
    signed = session.post(
        f"{api_url}/login",
        data={"login": user.login, "password": PASSWORD, "csrf_token": token},
        cookies={"paylambda_login_csrf": token},
        allow_redirects=False,
    )
    assert signed.headers["Location"].startswith("https://")
    assert "paylambda_session=" in signed.headers["Set-Cookie"] and "Secure" in signed.headers["Set-Cookie"]


def test_a_wrong_password_is_refused_without_a_session(api_url, user):
    refused = sign_in(api_url, user.login, "not the password")
    assert refused.status_code == 401
    assert "Wrong login or password." in refused.text
    assert "paylambda_session" not in refused.headers.get("Set-Cookie", "")


def test_repeated_failures_for_one_account_pause_its_sign_in(api_url, user):
    from chalicelib.settings import get_settings

    # From a new address each time: the account's own counter is what stops them.
    for _ in range(get_settings().sign_in_failures_per_account.count):
        assert sign_in(api_url, user.login, "guess", session=browser(fresh_address())).status_code == 401
    paused = sign_in(api_url, user.login, PASSWORD, session=browser(fresh_address()))
    assert paused.status_code == 429
    assert re.search(r"Too many failed sign-ins .* Try again in 15 minutes\.", text_of(paused))
    assert "paylambda_session" not in paused.headers.get("Set-Cookie", "")


def test_repeated_failures_from_one_address_pause_sign_in_from_it(api_url, user):
    from chalicelib.settings import get_settings

    address = fresh_address()
    for attempt in range(get_settings().sign_in_failures_per_address.count):
        assert sign_in(api_url, f"nobody-{attempt}", "guess", session=browser(address)).status_code == 401
    assert sign_in(api_url, user.login, session=browser(address)).status_code == 429
    assert sign_in(api_url, user.login, session=browser(fresh_address())).status_code == 303


@pytest.mark.parametrize("next_path", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:1"])
def test_sign_in_never_redirects_to_another_site(api_url, user, next_path):
    signed = sign_in(api_url, user.login, next_path=next_path)
    assert signed.headers["Location"] == f"{api_url}/stores"


def test_signing_out_ends_the_session_on_the_server(api_url, merchant):
    stolen_cookie = merchant.cookies["paylambda_session"]
    signed_out = post_form(merchant, f"{api_url}/stores", f"{api_url}/logout")
    assert signed_out.status_code == 303 and signed_out.headers["Location"] == f"{api_url}/login"
    replay = browser()
    replay.cookies.set("paylambda_session", stolen_cookie)
    assert replay.get(f"{api_url}/stores", allow_redirects=False).status_code == 303


def test_changing_the_password(api_url, user, merchant):
    other_browser = signed_in(api_url, user.login)
    page = f"{api_url}/account/password"

    wrong = post_form(
        merchant, page, page, current_password="nope", new_password="a new password", confirmation="a new password"
    )
    assert wrong.status_code == 400 and "The current password is wrong." in wrong.text
    differ = post_form(merchant, page, page, current_password=PASSWORD, new_password="a new password", confirmation="x")
    assert differ.status_code == 400 and "differ" in differ.text
    short = post_form(merchant, page, page, current_password=PASSWORD, new_password="short", confirmation="short")
    assert short.status_code == 400 and "at least 10 characters" in short.text

    changed = post_form(
        merchant, page, page, current_password=PASSWORD, new_password="a new password", confirmation="a new password"
    )
    assert changed.status_code == 200 and "Your password is changed" in changed.text
    assert merchant.get(f"{api_url}/stores", allow_redirects=False).status_code == 200
    assert other_browser.get(f"{api_url}/stores", allow_redirects=False).status_code == 303
    assert sign_in(api_url, user.login, PASSWORD).status_code == 401
    assert sign_in(api_url, user.login, "a new password").status_code == 303


# Stores


def test_creating_and_listing_stores(api_url, merchant, user):
    wallet = new_wallet()
    created = post_form(
        merchant, f"{api_url}/stores", f"{api_url}/stores", name=XSS, default_currency="eur", wallet=wallet
    )
    assert created.status_code == 303
    store_id = created.headers["Location"].rsplit("/", 1)[1]
    settings = merchant.get(created.headers["Location"])
    assert settings.status_code == 200 and Wallet.parse(wallet).address(0) in settings.text
    assert 'value="EUR"' in settings.text

    listing = merchant.get(f"{api_url}/stores")
    assert f"{api_url}/stores/{store_id}" in listing.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing.text and XSS not in listing.text


def test_a_store_with_bad_settings_is_not_created(api_url, merchant, user):
    from chalicelib.billing import stores

    refused = post_form(merchant, f"{api_url}/stores", f"{api_url}/stores", name="Shop", default_currency="XYZ")
    assert refused.status_code == 400 and "currency &#39;XYZ&#39; is not supported" in refused.text
    unnamed = post_form(merchant, f"{api_url}/stores", f"{api_url}/stores", name="  ", default_currency="USD")
    assert unnamed.status_code == 400 and "store name must be 1 to 100 characters" in unnamed.text
    assert stores.stores_of(user.login) == []


def test_store_settings_show_the_addresses_before_saving(api_url, merchant, user):
    from chalicelib.billing import stores

    store = stores.create_store(user.login, "Fresh shop")
    page = f"{api_url}/stores/{store.store_id}"
    wallet = new_wallet()
    settings = {
        "name": "Renamed shop",
        "default_currency": "GBP",
        "website": "https://shop.example.com",
        "invoice_expiration_minutes": "30",
        "transaction_speed": "low",
        "wallet": wallet,
    }
    preview = post_form(merchant, page, page, action="preview", **settings)
    assert preview.status_code == 200
    assert Wallet.parse(wallet).address(0) in preview.text and "before saving" in preview.text
    assert stores.get_store(store.store_id).wallet is None

    saved = post_form(merchant, page, page, action="save", **settings)
    assert saved.status_code == 303
    stored = stores.get_store(store.store_id)
    assert (stored.name, stored.default_currency, stored.website) == ("Renamed shop", "GBP", "https://shop.example.com")
    assert (stored.invoice_expiration_minutes, stored.transaction_speed) == (30, "low")
    assert stored.wallet.startswith("wpkh(")
    assert "Saved." in merchant.get(saved.headers["Location"]).text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("wallet", XPRV, "Never share private keys"),
        ("wallet", "abandon " * 11 + "about", "recovery phrase"),
        ("invoice_expiration_minutes", "0", "from 1 to 1440"),
        ("transaction_speed", "instant", "transaction speed must be one of high, medium, low-medium, low"),
        ("website", "javascript:alert(1)", "website must be an absolute http(s) URL"),
        ("contact_email", "a@shop.example, b@shop.example", "The contact email is not an email address"),
        ("contact_email", "owner@shop.example\r\nBcc: x@spam.example", "The contact email is not an email address"),
    ],
)
def test_bad_store_settings_are_refused_and_nothing_changes(api_url, merchant, store, field, value, message):
    from chalicelib.billing import stores

    page = f"{api_url}/stores/{store.store_id}"
    form = {
        "name": "Changed",
        "default_currency": "USD",
        "invoice_expiration_minutes": "15",
        "transaction_speed": "medium",
        "wallet": store.wallet,
        field: value,
    }
    refused = post_form(merchant, page, page, action="save", **form)
    assert refused.status_code == 400
    assert message in text_of(refused)
    assert stores.get_store(store.store_id).name == "Test shop"


@pytest.mark.parametrize("action", ["preview", "save"])
def test_a_mistyped_wallet_says_its_checksum_is_wrong_and_stays_in_the_field(api_url, merchant, store, action):
    from chalicelib.billing import stores

    wallet = new_wallet()
    mistyped = wallet[:40] + ("2" if wallet[40] != "2" else "3") + wallet[41:]
    page = f"{api_url}/stores/{store.store_id}"
    form = {"name": "Test shop", "default_currency": "USD", "invoice_expiration_minutes": "15", "wallet": mistyped}
    refused = post_form(merchant, page, page, action=action, transaction_speed="medium", **form)
    assert refused.status_code == 400 and "checksum does not match" in text_of(refused)
    assert f">{mistyped}</textarea>" in refused.text
    assert stores.get_store(store.store_id).wallet == store.wallet

    created = post_form(
        merchant, f"{api_url}/stores", f"{api_url}/stores", name="New", default_currency="USD", wallet=mistyped
    )
    assert created.status_code == 400 and "checksum does not match" in text_of(created)
    assert f">{mistyped}</textarea>" in created.text


def test_store_settings_still_open_when_the_saved_wallet_is_for_another_network(api_url, merchant, store):
    from embit.bip32 import HDKey
    from embit.networks import NETWORKS

    from chalicelib.models import StoreModel

    tpub = HDKey.from_seed(bytes(32), version=NETWORKS["test"]["xprv"]).to_public().to_base58(NETWORKS["test"]["xpub"])
    # As if saved while the service ran on testnet (BITCOIN_NETWORK has changed since).
    StoreModel(store.store_id).update(actions=[StoreModel.wallet.set(f"wpkh({tpub}/0/*)")])
    page = merchant.get(f"{api_url}/stores/{store.store_id}")
    assert page.status_code == 200
    assert "This wallet is for testnet" in page.text and 'name="wallet"' in page.text and tpub in page.text


# Another merchant's things


def test_another_users_store_is_not_found(api_url, merchant, other_store):
    from chalicelib.security import tokens

    base = f"{api_url}/stores/{other_store.store_id}"
    code = tokens.create_pairing_code(other_store.store_id, "pos", "theirs")
    for url in (base, f"{base}/tokens", f"{base}/invoices", f"{base}/tokens/revoke?token={tokens.reference(code)}"):
        page = merchant.get(url)
        assert page.status_code == 404, url
        assert page.headers["Content-Type"].startswith("text/html") and "Store not found" in page.text

    token = csrf_token(merchant.get(f"{api_url}/stores"))
    for url, fields in [
        (base, {"action": "save", "name": "Mine now", "default_currency": "USD"}),
        (f"{base}/tokens", {"facade": "merchant"}),
        (f"{base}/tokens/revoke", {"token": tokens.reference(code)}),
        (f"{base}/invoices/any/notifications", {}),
    ]:
        assert merchant.post(url, data={**fields, "csrf_token": token}).status_code == 404, url
    assert tokens.for_store(other_store.store_id)[0].status == "pending"


def test_a_client_cannot_be_approved_for_another_users_store(api_url, merchant, other_store):
    from chalicelib.security import tokens

    client, code = pairing_request(api_url)
    refused = approve(merchant, api_url, code, other_store.store_id)
    assert refused.status_code == 404 and "Store not found" in refused.text
    assert approve(merchant, api_url, code, other_store.store_id, decision="maybe").status_code == 400
    assert tokens.find_pairing(code).status == "pending"


def test_another_stores_invoice_is_not_found(api_url, merchant, store, other_store):
    their_session = signed_in(api_url, other_store.owner)
    their_client = paired_client(api_url, their_session, other_store.store_id)
    invoice = their_client.create_invoice({"price": 5, "currency": "EUR", "token": their_client.tokens["merchant"]})
    page = merchant.get(f"{api_url}/stores/{store.store_id}/invoices/{invoice['id']}")
    assert page.status_code == 404 and "Invoice not found" in page.text


# CSRF


def _forms(api_url: str, store, code: str, reference: str) -> list[tuple[str, dict]]:
    base = f"{api_url}/stores/{store.store_id}"
    return [
        (f"{api_url}/stores", {"name": "CSRF shop", "default_currency": "USD"}),
        (
            base,
            {
                "action": "save",
                "name": "Hijacked",
                "default_currency": "USD",
                "invoice_expiration_minutes": "15",
                "transaction_speed": "medium",
            },
        ),
        (f"{base}/tokens", {"facade": "merchant", "label": "attacker"}),
        (f"{base}/tokens/revoke", {"token": reference}),
        (f"{api_url}/api-access-request", {"pairingCode": code, "store_id": store.store_id, "decision": "approve"}),
        (
            f"{api_url}/account/password",
            {"current_password": PASSWORD, "new_password": "attacker's pw", "confirmation": "attacker's pw"},
        ),
        (f"{api_url}/logout", {}),
    ]


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token-wrong"], ids=["missing", "wrong"])
def test_forms_without_the_right_csrf_token_are_refused(api_url, merchant, user, store, token):
    from chalicelib.billing import stores
    from chalicelib.security import tokens

    client, code = pairing_request(api_url)
    existing = tokens.create_pairing_code(store.store_id, "pos", "keep me")
    for url, fields in _forms(api_url, store, code, tokens.reference(existing)):
        data = fields if token is None else {**fields, "csrf_token": token}
        refused = merchant.post(url, data=data, allow_redirects=False)
        assert refused.status_code == 403, url
        assert "did not come from this site" in refused.text

    assert [s.name for s in stores.stores_of(user.login)] == ["Test shop"]
    assert [t.label for t in tokens.for_store(store.store_id)] == ["keep me"]
    assert tokens.find_pairing(code).status == "pending"
    assert merchant.get(f"{api_url}/stores", allow_redirects=False).status_code == 200
    assert sign_in(api_url, user.login).status_code == 303


def test_only_urlencoded_forms_are_read(api_url, merchant, store):
    token = csrf_token(merchant.get(f"{api_url}/stores"))
    refused = merchant.post(f"{api_url}/stores", json={"name": "x", "default_currency": "USD", "csrf_token": token})
    assert refused.status_code == 403


def test_sign_in_needs_the_forms_csrf_cookie(api_url, user):
    session = browser()
    token = csrf_token(session.get(f"{api_url}/login"))
    without_cookie = browser().post(
        f"{api_url}/login", data={"login": user.login, "password": PASSWORD, "csrf_token": token}
    )
    assert without_cookie.status_code == 403
    wrong = session.post(
        f"{api_url}/login", data={"login": user.login, "password": PASSWORD, "csrf_token": token + "x"}
    )
    assert wrong.status_code == 403


# Access tokens


def test_a_pairing_code_is_shown_until_claimed_and_a_reload_makes_no_other(api_url, merchant, store):
    from chalicelib.security import tokens

    pem = crypto.generate_privkey()
    public_key = crypto.get_compressed_public_key_from_pem(pem)
    page = f"{api_url}/stores/{store.store_id}/tokens"
    created = post_form(merchant, page, page, facade="pos", label=XSS, client=public_key)
    assert created.status_code == 303 and created.headers["Location"].startswith(f"{page}?created=")
    shown = merchant.get(created.headers["Location"])
    code = re.search(r'<code id="pairing-code">(\w{7})</code>', shown.text).group(1)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown.text and XSS not in shown.text
    # A reload reads the page again: the same code, and no second one made.
    assert f'<code id="pairing-code">{code}</code>' in merchant.get(created.headers["Location"]).text
    assert len(tokens.for_store(store.store_id)) == 1
    listing = merchant.get(page).text
    assert code not in listing
    assert crypto.get_sin_from_pem(pem) in listing and "waiting to be claimed" in listing

    client = BTCPayClient(host=api_url, pem=pem, tokens=BTCPayClient(host=api_url, pem=pem).pair_client(code))
    assert client.create_invoice({"price": 3, "currency": "USD"})["status"] == "new"
    assert code not in merchant.get(created.headers["Location"]).text
    listing = merchant.get(page).text
    assert "active" in listing and "&lt;script&gt;alert(1)&lt;/script&gt;" in listing and XSS not in listing
    assert client.tokens["pos"] not in listing


def test_a_pairing_code_with_a_bad_client_key_is_refused(api_url, merchant, store):
    from chalicelib.security import tokens

    page = f"{api_url}/stores/{store.store_id}/tokens"
    refused = post_form(merchant, page, page, facade="merchant", client="not a key")
    assert refused.status_code == 400 and "public key in hex" in refused.text
    refused = post_form(merchant, page, page, facade="admin")
    assert refused.status_code == 400 and "facade must be one of pos, merchant" in refused.text
    assert tokens.for_store(store.store_id) == []


def test_revoking_a_token_after_confirming(api_url, merchant, store):
    client = paired_client(api_url, merchant, store.store_id)
    assert client.create_invoice({"price": 1, "currency": "USD", "token": client.tokens["merchant"]})["status"] == "new"

    listing = merchant.get(f"{api_url}/stores/{store.store_id}/tokens")
    confirm_url = html.unescape(re.search(r'href="([^"]+/tokens/revoke\?token=\w+)"', listing.text).group(1))
    confirmation = merchant.get(confirm_url)
    assert "Revoke this token?" in confirmation.text and client.client_id in confirmation.text
    reference = re.search(r'name="token" value="(\w+)"', confirmation.text).group(1)
    revoked = post_form(merchant, confirm_url, f"{api_url}/stores/{store.store_id}/tokens/revoke", token=reference)
    assert revoked.status_code == 303

    with pytest.raises(BitPayBitPayError, match="^401: This token has been revoked"):
        client.create_invoice({"price": 1, "currency": "USD", "token": client.tokens["merchant"]})
    assert client.client_id not in merchant.get(f"{api_url}/stores/{store.store_id}/tokens").text
    assert merchant.get(confirm_url).status_code == 404


# Pairing approval


def test_approving_a_clients_pairing_request(api_url, merchant, store):
    client, code = pairing_request(api_url, label=XSS)
    page = merchant.get(approval_url(api_url, code))
    assert page.status_code == 200
    for shown in (client.client_id, "merchant", code, "Test shop"):
        assert shown in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and XSS not in page.text

    approved = approve(merchant, api_url, code, store.store_id)
    assert approved.status_code == 200 and "Access approved" in approved.text
    invoice = client.create_invoice({"price": 10, "currency": "USD", "token": client.tokens["merchant"]})
    assert invoice["url"] == f"{api_url}/invoice?id={invoice['id']}"

    used = merchant.get(approval_url(api_url, code))
    assert used.status_code == 400 and "already been used" in used.text


def test_denying_a_clients_pairing_request(api_url, merchant, store):
    client, code = pairing_request(api_url)
    denied = approve(merchant, api_url, code, store.store_id, decision="deny")
    assert denied.status_code == 200 and "Access denied" in denied.text
    assert merchant.get(approval_url(api_url, code)).status_code == 404
    with pytest.raises(BitPayBitPayError, match="^401: Unknown token"):
        client.create_invoice({"price": 10, "currency": "USD", "token": client.tokens["merchant"]})


def test_unusable_pairing_codes_get_a_clear_page(api_url, merchant, store):
    from chalicelib.models import TokenModel
    from chalicelib.security import tokens

    unknown = merchant.get(approval_url(api_url, "Zzzzzzz"))
    assert unknown.status_code == 404 and "This pairing code is unknown" in unknown.text
    assert merchant.get(f"{api_url}/api-access-request").status_code == 404

    client, code = pairing_request(api_url)
    TokenModel.get(client.tokens["merchant"]).update(actions=[TokenModel.pairing_expiration.set(timedelta(seconds=-1))])
    expired = merchant.get(approval_url(api_url, code))
    assert expired.status_code == 400 and "has expired" in expired.text

    merchant_made = tokens.create_pairing_code(store.store_id, "merchant")
    for page in (
        merchant.get(approval_url(api_url, merchant_made.pairing_code)),
        approve(merchant, api_url, merchant_made.pairing_code, store.store_id, decision="deny"),
    ):
        assert page.status_code == 400 and "nothing to approve" in page.text
    assert tokens.find_pairing(merchant_made.pairing_code).status == "pending"

    for page in (unknown, expired):
        assert page.headers["Content-Type"].startswith("text/html") and "<h1>" in page.text


def test_a_merchant_without_stores_is_told_to_create_one(api_url, dynamodb):
    from chalicelib.security import users

    login = users.create_user(f"new-{uuid.uuid4().hex[:10]}", PASSWORD).login
    client, code = pairing_request(api_url)
    page = signed_in(api_url, login).get(approval_url(api_url, code))
    assert page.status_code == 200 and "You have no store" in page.text and 'name="decision"' not in page.text


# Invoices


def test_the_invoice_list_and_an_invoices_detail(api_url, merchant, store):
    client = paired_client(api_url, merchant, store.store_id)
    token = client.tokens["merchant"]
    first = client.create_invoice({"price": 10, "currency": "USD", "orderId": "order-1", "token": token})
    second = client.create_invoice(
        {"price": "12.5", "currency": "EUR", "orderId": XSS, "itemDesc": XSS, "token": token}
    )

    listing = merchant.get(f"{api_url}/stores/{store.store_id}/invoices")
    assert listing.status_code == 200
    assert listing.text.index(second["id"]) < listing.text.index(first["id"])
    assert "order-1" in listing.text and "12.50 EUR" in listing.text and "new" in listing.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing.text and XSS not in listing.text

    detail = merchant.get(f"{api_url}/stores/{store.store_id}/invoices/{second['id']}")
    assert detail.status_code == 200
    for shown in (second["bitcoinAddress"], second["btcPrice"], second["url"], "12.50 EUR"):
        assert shown in detail.text
    assert XSS not in detail.text
    assert merchant.get(f"{api_url}/stores/{store.store_id}/invoices/nope").status_code == 404


def test_a_bad_invoice_list_offset_is_a_clear_400(api_url, merchant, store):
    page = merchant.get(f"{api_url}/stores/{store.store_id}/invoices?offset=-1")
    assert page.status_code == 400 and "offset must be a whole number" in page.text


# The buyer's checkout


@pytest.fixture
def invoice(api_url, merchant, store) -> dict:
    client = paired_client(api_url, merchant, store.store_id)
    return client.create_invoice(
        {"price": 10, "currency": "USD", "itemDesc": XSS, "orderId": "secret-order", "token": client.tokens["merchant"]}
    )


def test_the_checkout_page_shows_what_to_pay(api_url, invoice):
    for url in (invoice["url"], f"{api_url}/i/{invoice['id']}"):
        page = browser().get(url)
        assert page.status_code == 200
        text = text_of(page)
        assert "Awaiting payment." in text and "Test shop" in text
        assert f"{invoice['btcDue']} BTC" in text and "10.00 USD" in text
        assert invoice["bitcoinAddress"] in text
        assert re.search(r"Time left: (14:5\d|15:00)", text)
        assert 'class="qr"' in page.text and f'href="{html.escape(invoice["paymentUrls"]["BIP21"])}"' in page.text
        assert page.text.count("data-copy=") == 2
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and XSS not in page.text
        assert "secret-order" not in page.text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"expiration": 1}, "This invoice has expired"),
        ({"status": "paid"}, "Payment received, waiting for confirmation"),
        ({"status": "complete"}, "Paid. Thank you."),
        ({"exception_status": "paidPartial", "btc_paid_sats": 1000}, "Partly paid: 0.00001000 BTC received"),
    ],
)
def test_the_checkout_page_says_how_the_invoice_stands(api_url, invoice, changes, message):
    update_invoice(invoice["id"], **changes)
    page = browser().get(invoice["url"])
    assert page.status_code == 200 and message in page.text
    payable = "exception_status" in changes
    assert ('class="qr"' in page.text) is payable
    assert (invoice["bitcoinAddress"] in page.text) is payable


def test_an_unknown_invoice_gets_a_readable_404(api_url):
    for url in (f"{api_url}/invoice?id=nope", f"{api_url}/invoice", f"{api_url}/i/{'x' * 500}"):
        page = browser().get(url)
        assert page.status_code == 404, url
        assert page.headers["Content-Type"].startswith("text/html") and "There is no invoice with this id" in page.text


# Every page


def test_every_page_forbids_framing_and_inline_script(api_url, merchant, store, invoice):
    urls = [
        f"{api_url}/login",
        f"{api_url}/stores",
        f"{api_url}/stores/{store.store_id}",
        f"{api_url}/stores/{store.store_id}/tokens",
        f"{api_url}/stores/{store.store_id}/invoices",
        f"{api_url}/stores/{store.store_id}/invoices/{invoice['id']}",
        f"{api_url}/account/password",
        approval_url(api_url, pairing_request(api_url)[1]),
        approval_url(api_url, "unknown"),
        f"{api_url}/stores/nope",
    ]
    for url in urls:
        page = merchant.get(url)
        assert page.status_code in (200, 404), url
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
        policy = page.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert page.headers["Cache-Control"] == "no-store"
        scripts = re.findall(r"<script[^>]*>", page.text)
        assert scripts and all(" src=" in script for script in scripts), url
        assert not re.search(r"<style|<[^>]+\s(?:style|on[a-z]+)=", page.text), url
        for asset in re.findall(r'(?:href|src)="([^"]+/static/[^"]+)"', page.text):
            assert asset.startswith(f"{api_url}/static/")
            assert merchant.get(html.unescape(asset)).status_code == 200


def _hash_source(content: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(content.encode()).digest()).decode() + "'"


def test_the_checkout_carries_its_stylesheet_and_script_and_allows_only_them_by_their_hashes(
    api_url, merchant, invoice
):
    page = merchant.get(invoice["url"])

    assert page.status_code == 200 and page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert "/static/" not in page.text and '<link rel="stylesheet"' not in page.text
    (style,) = re.findall(r"<style>(.*?)</style>", page.text, re.DOTALL)
    (script,) = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    # The very files the merchant pages link: one source.
    assert style == merchant.get(f"{api_url}/static/paylambda.css").text
    assert script == merchant.get(f"{api_url}/static/paylambda.js").text
    directives = dict(directive.split(" ", 1) for directive in page.headers["Content-Security-Policy"].split("; "))
    assert directives["script-src"] == _hash_source(script)
    assert directives["style-src"] == _hash_source(style)
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert directives["connect-src"] == "'self'" and directives["form-action"] == "'self'"
    assert not re.search(r"<[^>]+\s(?:style|on[a-z]+)=", page.text)
    # Its polls answer the status region alone.
    region = merchant.get(f"{api_url}/invoice/status?id={invoice['id']}").json()["statusRegion"]
    assert "<script" not in region and "<style" not in region and len(region) < 5_000


def test_static_files(api_url):
    css = browser().get(f"{api_url}/static/paylambda.css")
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    # Linked with their version in the URL: a browser keeps them a year and never asks again, even on a reload.
    assert css.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert browser().get(f"{api_url}/static/paylambda.js").headers["Content-Type"].startswith("text/javascript")
    for name in ("nope.css", "..%2Fpages.py", "%2E%2E%2Fpages.py", "pages.py"):
        missing = browser().get(f"{api_url}/static/{name}")
        assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("text/html"), name
