"""No free invoice, no address for two invoices, no address burned by retries: through the API and the watcher."""

import json
import os
import uuid
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest

from chalicelib.billing import stores
from chalicelib.errors import BadRequest
from chalicelib.models import ClaimModel, InvoiceModel, StoreModel
from chalicelib.payments.wallet import Wallet
from chalicelib.security import users
from tests.api_fixtures import root_only
from tests.conftest import PASSWORD, new_wallet
from tests.pages_support import post_form, signed_in, text_of, update_invoice
from tests.payments_support import MINUTE

USD_RATE = Decimal(65_000)  # the suite's fixed rate


def account_xpub() -> str:
    """A plain xpub of a fresh random account, to write descriptors of every script type with."""
    from embit.bip32 import HDKey

    return HDKey.from_seed(os.urandom(32)).derive("m/84h/0h/0h").to_public().to_base58()


def next_index(store) -> int:
    return StoreModel.get(store.store_id, consistent_read=True).next_address_index


def invoice_for(client, price, **fields):
    return client.post("/invoices", {"price": price, "currency": "USD", **fields})


# No free invoice


@root_only
def test_a_price_worth_less_than_a_satoshi_is_refused_naming_the_minimum(pos, store):
    # A positive price: the amount due rounds up to 1 satoshi, far below what Bitcoin relays.
    response = invoice_for(pos, "0.000001")

    assert response.status_code == 400
    error = response.json()["error"]
    assert "at least 294 sats (0.00000294 BTC)" in error and "0.20 USD" in error
    assert next_index(store) == 0


def _price_in_cents(sats: int, rounding) -> Decimal:
    return (Decimal(sats) * USD_RATE / 100_000_000).quantize(Decimal("0.01"), rounding=rounding)


@root_only
@pytest.mark.parametrize(
    ("descriptor", "minimum"),
    [
        ("pkh({}/0/*)", 546),
        ("sh(wpkh({}/0/*))", 540),
        ("sh(multi(1,{}/0/*,{}/0/*))", 540),
        ("wpkh({}/0/*)", 294),
        ("wsh(multi(1,{}/0/*,{}/0/*))", 330),
        ("tr({}/0/*)", 330),
    ],
    ids=["p2pkh", "p2sh-p2wpkh", "p2sh", "p2wpkh", "p2wsh", "p2tr"],
)
def test_the_dust_limit_follows_the_wallets_address_type(pair, user, descriptor, minimum):
    wallet = descriptor.format(account_xpub(), account_xpub())
    client = pair("merchant", store_id=stores.create_store(user.login, "Shop", wallet=wallet).store_id)
    below, enough = _price_in_cents(minimum - 1, ROUND_FLOOR), _price_in_cents(minimum, ROUND_CEILING)

    refused = invoice_for(client, str(below))
    accepted = invoice_for(client, str(enough))

    assert refused.status_code == 400
    assert f"at least {minimum} sats (0.{minimum:08d} BTC)" in refused.json()["error"]
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["data"]["paymentTotals"]["BTC"] >= minimum


@root_only
@pytest.mark.parametrize(
    ("price", "due"),
    [
        # 15,385.08 sats: the nearest satoshi would be 15,385, a shortfall the merchant never agreed to.
        ("10.0003", 15_386),
        # Exactly 15,385 sats: rounding up leaves a whole satoshi alone.
        ("10.00025", 15_385),
        # 15,384.62 sats, where nearest and up agree.
        (10.00001, 15_385),
    ],
)
def test_the_amount_due_rounds_up_to_a_whole_satoshi(merchant, price, due):
    response = invoice_for(merchant, price)

    assert response.status_code == 200, response.text
    assert response.json()["data"]["paymentTotals"] == {"BTC": due}


@root_only
@pytest.mark.parametrize(
    "price",
    ["1e-1000030", "1e999999999", "9" * 5000, "NaN", "sNaN", "Infinity", "-Infinity", "0x10", "1_000", "١٠", "1e-99"],
)
def test_prices_that_are_no_plain_number_are_refused_before_any_arithmetic(merchant, store, price):
    response = invoice_for(merchant, price)

    assert response.status_code == 400
    assert response.json()["error"].startswith("price")
    assert next_index(store) == 0


@root_only
def test_json_numbers_and_padded_text_are_read_as_numbers(merchant):
    assert invoice_for(merchant, " 1 ").json()["data"]["price"] == 1.0
    raw = merchant.post(
        "/invoices", json.dumps({"currency": "USD", "token": merchant.token})[:-1] + ', "price": 1e-300}'
    )
    assert raw.status_code == 400 and raw.json()["error"].startswith("price")


@root_only
def test_an_invoice_stored_with_nothing_due_is_never_paid(api_url, merchant, chain, watch, clock):
    """Defence in depth for invoices made before the dust check: with 0 due, nothing counts as paid."""
    created = invoice_for(merchant, "10", transactionSpeed="high").json()["data"]
    update_invoice(created["id"], btc_due_sats=0)

    watch()
    assert merchant.get(f"/invoices/{created['id']}").json()["data"]["status"] == "new"
    clock.advance(20 * MINUTE)
    watch()

    invoice = InvoiceModel.get(created["id"])
    assert invoice.status == "expired"


# No address serves two invoices


def _other_owner() -> str:
    return users.create_user(f"other-{uuid.uuid4().hex[:10]}", PASSWORD).login


def test_a_wallet_belongs_to_one_store_in_any_of_its_spellings(store):
    account = Wallet.parse(store.wallet)
    receive_key = str(account).split("(")[1].split("/")[0]
    from embit.bip32 import HDKey

    # The account key's /0 child derives the very same receive addresses with /*.
    child = HDKey.from_string(receive_key).derive([0]).to_base58()
    spellings = [store.wallet, str(account), f"wpkh([d34db33f/84h/0h/0h]{receive_key}/0/*)", f"wpkh({child}/*)"]

    for spelling in spellings:
        with pytest.raises(BadRequest, match="already used by another store"):
            stores.create_store(_other_owner(), "Copycat", wallet=spelling)


@root_only
def test_a_second_store_with_the_same_wallet_is_refused_on_the_pages(api_url, user, store):
    session = signed_in(api_url, user.login)
    refused = post_form(
        session, f"{api_url}/stores", f"{api_url}/stores", name="Twin", default_currency="USD", wallet=store.wallet
    )

    assert refused.status_code == 400
    assert "This wallet is already used by another store" in text_of(refused)
    assert [s.store_id for s in stores.stores_of(user.login)] == [store.store_id]


def _settings(store, **changes) -> dict:
    return {
        "name": store.name,
        "default_currency": store.default_currency,
        "invoice_expiration_minutes": "15",
        "transaction_speed": "medium",
        "wallet": store.wallet or "",
        **changes,
    }


def test_changing_or_clearing_a_wallet_releases_it(store, other_store):
    wallet = store.wallet
    with pytest.raises(BadRequest, match="already used by another store"):
        stores.update_settings(other_store, _settings(other_store, wallet=wallet))

    stores.update_settings(store, _settings(store, wallet=new_wallet()))
    stores.update_settings(other_store, _settings(other_store, wallet=wallet))
    assert StoreModel.get(other_store.store_id).wallet == str(Wallet.parse(wallet))

    stores.update_settings(other_store, _settings(other_store, wallet=""))
    third = stores.create_store(_other_owner(), "Third", wallet=wallet)
    assert ClaimModel.get(f"wallet#{Wallet.parse(wallet).identity}").store_id == third.store_id
    # Saving the same wallet again is no change of owner.
    stores.update_settings(third, _settings(third, name="Third, renamed"))
    assert StoreModel.get(third.store_id).name == "Third, renamed"


@root_only
def test_an_address_serves_one_invoice_even_when_a_wallet_claim_was_bypassed(
    api_url, pair, store, other_store, chain, watch
):
    """Two stores on one wallet (as stores saved before wallet claims could be): one payment, one invoice."""
    StoreModel(other_store.store_id).update(actions=[StoreModel.wallet.set(store.wallet)])
    ours, theirs = pair("merchant"), pair("merchant", store_id=other_store.store_id)
    first = invoice_for(ours, "10").json()["data"]

    refused = invoice_for(theirs, "10")

    assert refused.status_code == 400
    assert refused.json()["error"] == (
        f"The store's receive address {first['bitcoinAddress']} already belongs to another invoice: its wallet is "
        "also used elsewhere. Give the store a wallet of its own (another account's extended public key)."
    )
    assert ClaimModel.get(f"address#{first['bitcoinAddress']}").invoice_id == first["id"]
    chain.pay(first["bitcoinAddress"], first["paymentTotals"]["BTC"])
    watch()
    assert ours.get(f"/invoices/{first['id']}").json()["data"]["status"] == "paid"
    assert theirs.get("/invoices").json()["data"] == []


# Retries and refused creates keep the address index


@root_only
def test_retries_and_refused_creates_advance_the_index_by_at_most_one(merchant, store):
    retries = [invoice_for(merchant, "10", guid="order-25") for _ in range(25)]
    refused = [
        invoice_for(merchant, "0.01"),  # below the dust limit
        invoice_for(merchant, "1e-1000030"),
        invoice_for(merchant, "10", notificationURL="http://[::1"),
        invoice_for(merchant, "10", currency="XYZ"),
        invoice_for(merchant, "10", buyer={"email": "nobody"}),
    ]

    assert {response.json()["data"]["id"] for response in retries} == {retries[0].json()["data"]["id"]}
    assert [response.status_code for response in refused] == [400] * 5
    assert next_index(store) == 1
    following = invoice_for(merchant, "10").json()["data"]
    assert following["bitcoinAddress"] == Wallet.parse(store.wallet).address(1)


@root_only
def test_the_settings_page_warns_when_unused_addresses_outrun_the_gap_limit(api_url, user, store, merchant):
    session = signed_in(api_url, user.login)
    page = f"{api_url}/stores/{store.store_id}"
    assert post_form(session, page, page, action="save", **_settings(store, gap_limit="3")).status_code == 303
    warning = "More than 3 invoices in a row were never paid"
    made = [invoice_for(merchant, "10").json()["data"] for _ in range(3)]
    assert warning not in text_of(session.get(page))

    made.append(invoice_for(merchant, "10").json()["data"])
    assert warning in text_of(session.get(page))

    update_invoice(made[-1]["id"], btc_paid_sats=made[-1]["paymentTotals"]["BTC"])
    assert warning not in text_of(session.get(page))


@root_only
def test_a_bad_gap_limit_is_refused_on_the_page(api_url, user, store):
    session = signed_in(api_url, user.login)
    page = f"{api_url}/stores/{store.store_id}"

    refused = post_form(session, page, page, action="save", **_settings(store, gap_limit="0"))

    assert refused.status_code == 400 and "gap limit must be a whole number from 1 to 1000" in text_of(refused)
    assert StoreModel.get(store.store_id).gap_limit == 20


@root_only
def test_the_index_is_not_reserved_when_the_guid_exists_even_for_another_pos_client(pair, store):
    first, second = pair("pos"), pair("pos")
    invoice_for(first, "10", guid="till-9")

    refused = invoice_for(second, "10", guid="till-9")

    assert refused.status_code == 400 and json.loads(refused.text)["error"].startswith("guid is already used")
    assert next_index(store) == 1
