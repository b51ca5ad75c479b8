"""Abuse limits: atomic fixed-window counters, and what they guard (pairing, pending tokens, sign-in)."""

import re
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.errors import TooManyRequests
from chalicelib.models import LimitModel
from chalicelib.security import limits, tokens
from chalicelib.settings import Rate
from tests.api_fixtures import root_only
from tests.bitid_client import BitIdClient
from tests.conftest import PASSWORD
from tests.pages_support import browser, csrf_token, fresh_address, sign_in, text_of


@pytest.fixture
def real_limits(monkeypatch):
    """The production defaults: the suite raises the per-address ones, since all its clients share 127.0.0.1."""
    from chalicelib.settings import get_settings

    monkeypatch.delenv("LIMIT_PAIRING_FAILURES_PER_ADDRESS")
    monkeypatch.delenv("LIMIT_PENDING_TOKENS_PER_ADDRESS")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _in_parallel(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(number: int) -> None:
        barrier.wait()
        results[number] = work(number)

    threads = [threading.Thread(target=run, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _subject() -> str:
    return uuid.uuid4().hex


def _assert_retry_after(response, most: int) -> None:
    assert 0 < int(response.headers["Retry-After"]) <= most


# The counters

RATE = Rate(count=5, seconds=900)


def test_parallel_hits_each_get_their_own_number(dynamodb):
    subject = _subject()
    counts = _in_parallel(30, lambda _: limits.count("test", subject, RATE))
    assert sorted(counted.hits for counted in counts) == list(range(1, 31))
    assert sum(not counted.over for counted in counts) == RATE.count


def test_a_window_that_has_ended_starts_again_though_dynamodb_has_not_deleted_it(dynamodb):
    subject = _subject()
    LimitModel(f"test#{subject}", hits=50, expiration=datetime.now(UTC) - timedelta(seconds=1)).save()

    counted = limits.count("test", subject, RATE)

    assert counted.hits == 1 and not counted.over
    assert 890 <= (counted.expiration - datetime.now(UTC)).total_seconds() <= 900


def test_racing_restarts_of_an_ended_window_lose_no_hit(dynamodb):
    subject = _subject()
    LimitModel(f"test#{subject}", hits=50, expiration=datetime.now(UTC) - timedelta(seconds=1)).save()

    counts = _in_parallel(20, lambda _: limits.count("test", subject, RATE))

    assert sorted(counted.hits for counted in counts) == list(range(1, 21))


def test_an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_one_as_ipv4(dynamodb, real_limits):
    site, subnet = uuid.uuid4().bytes[:2]
    prefix, neighbour = f"2001:db8:{site:x}:{subnet:x}", f"2001:db8:{site:x}:{subnet ^ 1:x}"
    for number in range(real_limits.pending_tokens_per_address.count):
        tokens.request_pairing(BitIdClient("").sin, "merchant", address=f"{prefix}::{number + 1:x}")
    with pytest.raises(TooManyRequests):
        tokens.request_pairing(BitIdClient("").sin, "merchant", address=f"{prefix}:ffff::1")
    assert tokens.request_pairing(BitIdClient("").sin, "merchant", address=f"{neighbour}::1").pairing_code

    address = fresh_address()
    for _ in range(real_limits.pending_tokens_per_address.count):
        tokens.request_pairing(BitIdClient("").sin, "merchant", address=address)
    with pytest.raises(TooManyRequests):
        tokens.request_pairing(BitIdClient("").sin, "merchant", address=f"::ffff:{address}")


# Pairing codes


def _post(address: str, url: str, body: dict):
    return browser(address).post(url, json=body)


@root_only
def test_failed_claims_from_one_address_are_refused_past_the_limit(api_url, store, real_limits):
    limit = real_limits.pairing_failures_per_address
    address, client = fresh_address(), BitIdClient(api_url)
    for _ in range(limit.count):
        unknown = _post(address, f"{api_url}/tokens", {"id": client.sin, "pairingCode": "Zz9Zz9Z"})
        assert unknown.status_code == 404
    code = tokens.create_pairing_code(store.store_id, "merchant").pairing_code

    refused = _post(address, f"{api_url}/tokens", {"id": client.sin, "pairingCode": code})

    assert refused.status_code == 429
    assert refused.headers["Content-Type"] == "application/json"
    assert re.fullmatch(
        r"Too many failed pairing attempts from this address\. Try again in 15 minutes\.", refused.json()["error"]
    )
    _assert_retry_after(refused, limit.seconds)
    # Counted per address: the same code from elsewhere is still good.
    assert _post(fresh_address(), f"{api_url}/tokens", {"id": client.sin, "pairingCode": code}).status_code == 200


@root_only
def test_successful_claims_do_not_count_against_the_address(api_url, store, real_limits):
    address = fresh_address()
    for _ in range(real_limits.pairing_failures_per_address.count + 1):
        code = tokens.create_pairing_code(store.store_id, "pos").pairing_code
        claimed = _post(address, f"{api_url}/tokens", {"id": BitIdClient(api_url).sin, "pairingCode": code})
        assert claimed.status_code == 200, claimed.text


def _wrong_tries(api_url: str, code: str, tries: int) -> list:
    return [
        _post(fresh_address(), f"{api_url}/tokens", {"id": BitIdClient(api_url).sin, "pairingCode": code})
        for _ in range(tries)
    ]


@root_only
def test_a_code_is_burned_after_its_wrong_tries(api_url, store, real_limits):
    owner = BitIdClient(api_url)
    allowed = real_limits.pairing_failures_per_code.count
    survivor = tokens.create_pairing_code(store.store_id, "merchant", sin=owner.sin).pairing_code
    burned = tokens.create_pairing_code(store.store_id, "merchant", sin=owner.sin).pairing_code

    assert {r.status_code for r in _wrong_tries(api_url, survivor, allowed - 1)} == {400}
    tries = _wrong_tries(api_url, burned, allowed)
    assert {r.status_code for r in tries} == {400}
    assert "revoked" in tries[-1].json()["error"] and "revoked" not in tries[-2].json()["error"]

    claim = {"id": owner.sin, "pairingCode": burned}
    refused = _post(fresh_address(), f"{api_url}/tokens", claim)
    assert refused.status_code == 400
    assert refused.json() == {"error": "The specified pairingCode has been revoked"}
    assert _post(fresh_address(), f"{api_url}/tokens", {**claim, "pairingCode": survivor}).status_code == 200


@root_only
def test_a_merchant_code_claimed_without_an_id_is_a_wrong_try(api_url, store, real_limits):
    code = tokens.create_pairing_code(store.store_id, "merchant").pairing_code
    for _ in range(real_limits.pairing_failures_per_code.count):
        assert _post(fresh_address(), f"{api_url}/tokens", {"pairingCode": code}).status_code == 400
    claim = {"id": BitIdClient(api_url).sin, "pairingCode": code}
    assert _post(fresh_address(), f"{api_url}/tokens", claim).status_code == 400


@root_only
def test_pending_tokens_from_one_address_are_refused_past_the_limit(api_url, real_limits):
    limit = real_limits.pending_tokens_per_address
    address = fresh_address()
    for _ in range(limit.count):
        made = _post(address, f"{api_url}/tokens", {"id": BitIdClient(api_url).sin, "facade": "merchant"})
        assert made.status_code == 200, made.text

    refused = _post(address, f"{api_url}/tokens", {"id": BitIdClient(api_url).sin, "facade": "merchant"})

    assert refused.status_code == 429
    assert refused.json()["error"].startswith("Too many pairing requests from this address.")
    assert int(refused.headers["Retry-After"]) > 15 * 60
    _assert_retry_after(refused, limit.seconds)
    other = _post(fresh_address(), f"{api_url}/tokens", {"id": BitIdClient(api_url).sin, "facade": "merchant"})
    assert other.status_code == 200


@root_only
def test_guessing_codes_on_the_approval_page_is_limited(api_url, user, real_limits):
    session = browser(fresh_address())
    assert sign_in(api_url, user.login, session=session).status_code == 303
    for _ in range(real_limits.pairing_failures_per_address.count):
        assert session.get(f"{api_url}/api-access-request", params={"pairingCode": "Zz9Zz9Z"}).status_code == 404

    requested = _post(fresh_address(), f"{api_url}/tokens", {"id": BitIdClient(api_url).sin}).json()["data"][0]
    refused = session.get(f"{api_url}/api-access-request", params={"pairingCode": requested["pairingCode"]})

    assert refused.status_code == 429
    assert "Too many failed pairing attempts" in text_of(refused)
    _assert_retry_after(refused, 15 * 60)


@root_only
def test_a_merchant_made_code_opened_on_the_approval_page_is_a_wrong_try(api_url, user, store, real_limits):
    session = browser(fresh_address())
    assert sign_in(api_url, user.login, session=session).status_code == 303
    client = BitIdClient(api_url)
    code = tokens.create_pairing_code(store.store_id, "merchant", sin=client.sin).pairing_code
    for _ in range(real_limits.pairing_failures_per_code.count):
        assert session.get(f"{api_url}/api-access-request", params={"pairingCode": code}).status_code == 400
    refused = _post(fresh_address(), f"{api_url}/tokens", {"id": client.sin, "pairingCode": code})
    assert refused.json() == {"error": "The specified pairingCode has been revoked"}


# Signing in


def _login_form(api_url: str, address: str):
    """A browser from `address` that has loaded the sign-in form: (browser, its CSRF token)."""
    session = browser(address)
    return session, csrf_token(session.get(f"{api_url}/login"))


def _post_login(session, api_url: str, token: str, login: str, password: str):
    return session.post(
        f"{api_url}/login", data={"login": login, "password": password, "csrf_token": token}, allow_redirects=False
    )


@root_only
def test_parallel_wrong_passwords_are_counted_before_they_are_checked(api_url, user, real_limits):
    allowed = real_limits.sign_in_failures_per_account.count
    forms = [_login_form(api_url, fresh_address()) for _ in range(50)]

    def guess(number: int) -> int:
        session, token = forms[number]
        return _post_login(session, api_url, token, user.login, "guess").status_code

    answers = _in_parallel(50, guess)

    assert 1 <= answers.count(401) <= allowed
    assert answers.count(401) + answers.count(429) == 50
    session, token = _login_form(api_url, fresh_address())
    refused = _post_login(session, api_url, token, user.login, PASSWORD)
    assert refused.status_code == 429
    assert re.search(r"Too many failed sign-ins .* Try again in 15 minutes\.", text_of(refused))
    _assert_retry_after(refused, real_limits.sign_in_failures_per_account.seconds)
    assert "paylambda_session" not in refused.headers.get("Set-Cookie", "")


@root_only
def test_the_right_password_gives_its_count_back(api_url, user, real_limits):
    address = fresh_address()
    # A new browser each time (no device cookie): the account's own counter is the one at stake.
    for _ in range(real_limits.sign_in_failures_per_account.count + 2):
        session, token = _login_form(api_url, address)
        assert _post_login(session, api_url, token, user.login, PASSWORD).status_code == 303
    session, token = _login_form(api_url, address)
    assert _post_login(session, api_url, token, user.login, "guess").status_code == 401


def _owners_browser(api_url: str, login: str):
    """The owner's browser after a sign-in: it holds the device cookie, and is signed out again."""
    session, token = _login_form(api_url, fresh_address())
    signed = _post_login(session, api_url, token, login, PASSWORD)
    assert signed.status_code == 303
    assert "paylambda_device=" in signed.headers["Set-Cookie"]
    session.cookies.set("paylambda_session", None)
    return session, token


def _lock_out(api_url: str, login: str, tries: int) -> None:
    for _ in range(tries):
        session, token = _login_form(api_url, fresh_address())
        assert _post_login(session, api_url, token, login, "guess").status_code == 401


@root_only
def test_guesses_from_elsewhere_never_lock_the_owner_out_of_a_known_browser(api_url, user, real_limits):
    owner, owner_token = _owners_browser(api_url, user.login)
    _lock_out(api_url, user.login, real_limits.sign_in_failures_per_account.count)

    stranger, stranger_token = _login_form(api_url, fresh_address())
    assert _post_login(stranger, api_url, stranger_token, user.login, PASSWORD).status_code == 429
    assert _post_login(owner, api_url, owner_token, user.login, PASSWORD).status_code == 303


@root_only
def test_a_known_browser_has_its_own_limit(api_url, user, real_limits):
    owner, token = _owners_browser(api_url, user.login)
    for _ in range(real_limits.sign_in_failures_per_device.count):
        assert _post_login(owner, api_url, token, user.login, "guess").status_code == 401

    refused = _post_login(owner, api_url, token, user.login, PASSWORD)

    assert refused.status_code == 429
    _assert_retry_after(refused, real_limits.sign_in_failures_per_device.seconds)
    # The account's own counter saw none of them.
    stranger, stranger_token = _login_form(api_url, fresh_address())
    assert _post_login(stranger, api_url, stranger_token, user.login, PASSWORD).status_code == 303


@root_only
def test_a_device_cookie_proves_nothing_for_another_account_nor_when_altered(api_url, user, real_limits):
    from chalicelib.security import users

    other = users.create_user(f"other-{uuid.uuid4().hex[:10]}", PASSWORD)
    other_browser, _ = _owners_browser(api_url, other.login)
    owner, _ = _owners_browser(api_url, user.login)
    device_cookie = owner.cookies["paylambda_device"]
    payload, _, mac = device_cookie.rpartition(".")
    _lock_out(api_url, user.login, real_limits.sign_in_failures_per_account.count)

    for cookie in (other_browser.cookies["paylambda_device"], f"{payload}.{'0' * len(mac)}", payload + "A." + mac):
        session, token = _login_form(api_url, fresh_address())
        session.cookies.set("paylambda_device", cookie)
        assert _post_login(session, api_url, token, user.login, PASSWORD).status_code == 429
