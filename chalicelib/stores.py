"""Stores: a user owns many; each has its own wallet, currency and invoice settings."""

import secrets

import base58
from pynamodb.exceptions import UpdateError

from .errors import BadRequest, NotFound
from .models import StoreModel, condition_failed
from .rates import get_rates
from .settings import get_settings
from .web import http_url

# Confirmations that make an invoice `confirmed`, per transaction speed.
TARGET_CONFIRMATIONS = {"high": 0, "medium": 1, "low-medium": 2, "low": 6}
TRANSACTION_SPEEDS = tuple(TARGET_CONFIRMATIONS)
MAX_NAME_LENGTH = 100
# A day: longer than any checkout needs, short enough that the rate quoted still means something.
MAX_INVOICE_EXPIRATION_MINUTES = 24 * 60


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"store name must be 1 to {MAX_NAME_LENGTH} characters")
    return name.strip()


def _check_currency(currency: object) -> str:
    if not isinstance(currency, str) or not get_rates().is_known(currency.upper()):
        raise BadRequest(f"currency {currency!r} is not supported")
    return currency.upper()


def _check_expiration_minutes(minutes: object) -> int:
    text = str(minutes).strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_INVOICE_EXPIRATION_MINUTES:
        raise BadRequest(
            f"invoice expiration must be a whole number of minutes from 1 to {MAX_INVOICE_EXPIRATION_MINUTES}"
        )
    return int(text)


def _check_speed(speed: object) -> str:
    if speed not in TRANSACTION_SPEEDS:
        raise BadRequest(f"transaction speed must be one of {', '.join(TRANSACTION_SPEEDS)}")
    return speed


def _check_email(email: object) -> str | None:
    """An address to send to, or None when empty; one address only (no list, no header tricks)."""
    text = str(email or "").strip()
    if not text:
        return None
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain or len(text) > 254 or any(c in text for c in ' ,;<>"\r\n\t'):
        raise BadRequest("The contact email is not an email address")
    return text


def _parse_wallet(text: str):
    # embit is imported on first use: the invoice and store paths need it, start-up does not.
    from .wallet import Wallet

    return Wallet.parse(text, get_settings().bitcoin_network)


def normalise_wallet(text: str | None) -> str | None:
    """The wallet in canonical form; None clears it."""
    if text is None or not text.strip():
        return None
    return str(_parse_wallet(text))


def first_addresses(wallet: str, count: int = 5) -> list[str]:
    """The wallet's first receive addresses, for the merchant to compare with their own wallet's."""
    return _parse_wallet(wallet).addresses(0, count)


def create_store(owner: str, name: object, default_currency: object = "USD", wallet: str | None = None) -> StoreModel:
    store = StoreModel(
        base58.b58encode(secrets.token_bytes(16)).decode(),
        owner=owner,
        name=_check_name(name),
        default_currency=_check_currency(default_currency),
        wallet=normalise_wallet(wallet),
    )
    store.save(condition=StoreModel.store_id.does_not_exist())
    return store


def update_settings(store: StoreModel, settings: dict[str, str]) -> StoreModel:
    """Validate every setting first, then save them together in one UpdateItem.

    The address counter is left alone even when the wallet changes: an index
    once used is never handed out again, so no two invoices share an address.
    """
    values = [
        (StoreModel.name, _check_name(settings.get("name"))),
        (StoreModel.default_currency, _check_currency(settings.get("default_currency"))),
        (StoreModel.website, http_url(settings.get("website"), "website")),
        (StoreModel.invoice_expiration_minutes, _check_expiration_minutes(settings.get("invoice_expiration_minutes"))),
        (StoreModel.transaction_speed, _check_speed(settings.get("transaction_speed"))),
        (StoreModel.wallet, normalise_wallet(settings.get("wallet"))),
        (StoreModel.contact_email, _check_email(settings.get("contact_email"))),
    ]
    store.update(
        actions=[attribute.set(value) if value is not None else attribute.remove() for attribute, value in values]
    )
    return store


def allow_public_invoices(store: StoreModel, allowed: bool) -> None:
    """BTCPay's "anyone can create invoice": unsigned POST /invoices?storeId= makes invoices for the store."""
    store.update(actions=[StoreModel.anyone_can_invoice.set(allowed)])


def get_store(store_id: str) -> StoreModel | None:
    if not store_id or len(store_id) > 64:
        return None
    try:
        return StoreModel.get(store_id)
    except StoreModel.DoesNotExist:
        return None


def owned_store(owner: str, store_id: str) -> StoreModel:
    """The store when `owner` owns it; anyone else's looks just like a missing one."""
    store = get_store(store_id)
    if store is None or store.owner != owner:
        raise NotFound("Store not found")
    return store


def stores_of(owner: str) -> list[StoreModel]:
    return list(StoreModel.by_owner.query(owner))


def reserve_address_index(store_id: str) -> tuple[StoreModel, int]:
    """Advance the store's address counter atomically; returns the store as updated and the index to use.

    One UpdateItem both reserves the index and reads the store's settings, so
    invoices created concurrently never share an address.
    """
    store = StoreModel(store_id)
    try:
        store.update(
            actions=[StoreModel.next_address_index.add(1)],
            condition=StoreModel.store_id.exists() & StoreModel.wallet.exists(),
        )
    except UpdateError as exc:
        if condition_failed(exc):
            raise BadRequest("This store has no wallet: set its extended public key in the store settings") from exc
        raise
    return store, store.next_address_index - 1
