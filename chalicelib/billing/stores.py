"""Stores: a user owns many; each has its own wallet, currency and invoice settings."""

import secrets

import base58
from pynamodb.exceptions import PutError, TransactWriteError, UpdateError

from chalicelib.errors import BadRequest, NotFound
from chalicelib.fields import http_url, text
from chalicelib.models import ClaimModel, StoreModel, condition_failed, failed_conditions, transaction
from chalicelib.payments.rates import get_rates
from chalicelib.settings import get_settings

# Confirmations that make an invoice `confirmed`, per transaction speed.
TARGET_CONFIRMATIONS = {"high": 0, "medium": 1, "low-medium": 2, "low": 6}
TRANSACTION_SPEEDS = tuple(TARGET_CONFIRMATIONS)
MAX_NAME_LENGTH = 100
MAX_GAP_LIMIT = 1000
WALLET_TAKEN = (
    "This wallet is already used by another store. Give each store a wallet of its own (another account's "
    "extended public key), so that no payment can ever count for two stores' invoices."
)
_NO_WALLET = "This store has no wallet: set its extended public key in the store settings"
# The languages the checkout speaks (pages/locale has a catalog for each but English), by their names.
CHECKOUT_LANGUAGES = {"en": "English", "de": "Deutsch", "es": "Español", "fr": "Français", "pt": "Português"}
DEFAULT_LANGUAGE = "en"
# A day: longer than any checkout needs, short enough that the rate quoted still means something.
MAX_INVOICE_EXPIRATION_MINUTES = 24 * 60


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"store name must be 1 to {MAX_NAME_LENGTH} characters")
    return text(name, "store name", MAX_NAME_LENGTH).strip()


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


def _check_language(language: object) -> str:
    if language not in CHECKOUT_LANGUAGES:
        raise BadRequest(f"checkout language must be one of {', '.join(CHECKOUT_LANGUAGES)}")
    return language


def _check_gap_limit(value: object) -> int:
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_GAP_LIMIT:
        raise BadRequest(f"gap limit must be a whole number from 1 to {MAX_GAP_LIMIT}")
    return int(text)


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
    from chalicelib.payments.wallet import Wallet

    return Wallet.parse(text, get_settings().bitcoin_network)


def normalise_wallet(text: str | None) -> str | None:
    """The wallet in canonical form; None clears it."""
    if text is None or not text.strip():
        return None
    return str(_parse_wallet(text))


def first_addresses(wallet: str, count: int = 5) -> list[str]:
    """The wallet's first receive addresses, for the merchant to compare with their own wallet's."""
    return _parse_wallet(wallet).addresses(0, count)


def _wallet_claim(store_id: str, wallet: str) -> ClaimModel:
    return ClaimModel(f"wallet#{_parse_wallet(wallet).identity}", store_id=store_id)


def _claim_of(store_id: str, wallet: str | None) -> ClaimModel | None:
    """The claim `store_id` holds on `wallet`; None for no wallet, or one this network cannot read."""
    if wallet is None:
        return None
    try:
        return _wallet_claim(store_id, wallet)
    except BadRequest:
        # Saved while BITCOIN_NETWORK was another one: it cannot be read now, nor have been claimed since.
        return None


def _free_or_mine(store_id: str):
    # A store saved before wallets were claimed holds none: releasing it, or claiming its own, must still work.
    return ClaimModel.key.does_not_exist() | (ClaimModel.store_id == store_id)


def create_store(owner: str, name: object, default_currency: object = "USD", wallet: str | None = None) -> StoreModel:
    """A new store; its wallet, if given, is claimed for it first."""
    store = StoreModel(
        base58.b58encode(secrets.token_bytes(16)).decode(),
        owner=owner,
        name=_check_name(name),
        default_currency=_check_currency(default_currency),
        wallet=normalise_wallet(wallet),
    )
    claim = _claim_of(store.store_id, store.wallet)
    if claim is not None:
        # Claimed first, on its own: the store's id is new and random, so its PutItem cannot lose a race.
        try:
            claim.save(condition=ClaimModel.key.does_not_exist())
        except PutError as exc:
            if condition_failed(exc):
                raise BadRequest(WALLET_TAKEN) from exc
            raise
    store.save(condition=StoreModel.store_id.does_not_exist())
    return store


def settings_of(store: StoreModel) -> dict[str, str]:
    """The store's settings as `update_settings` takes them (and its settings page shows them)."""
    return {
        "name": store.name,
        "default_currency": store.default_currency,
        "website": store.website or "",
        "invoice_expiration_minutes": str(store.invoice_expiration_minutes),
        "transaction_speed": store.transaction_speed,
        "default_language": store.default_language,
        "gap_limit": str(store.gap_limit),
        "wallet": store.wallet or "",
        "contact_email": store.contact_email or "",
    }


def update_settings(store: StoreModel, settings: dict[str, str]) -> StoreModel:
    """Validate every setting first, then save them together, claiming a new wallet and releasing the old.

    The address counter is left alone even when the wallet changes: an index
    once used is never handed out again, so no two invoices share an address.
    The update is conditioned on the wallet `store` was read with, so two saves
    racing cannot leave a claim behind that no store holds.
    """
    wallet = normalise_wallet(settings.get("wallet"))
    values = [
        (StoreModel.name, _check_name(settings.get("name"))),
        (StoreModel.default_currency, _check_currency(settings.get("default_currency"))),
        (StoreModel.website, http_url(settings.get("website"), "website")),
        (StoreModel.invoice_expiration_minutes, _check_expiration_minutes(settings.get("invoice_expiration_minutes"))),
        (StoreModel.transaction_speed, _check_speed(settings.get("transaction_speed"))),
        (StoreModel.gap_limit, _check_gap_limit(settings.get("gap_limit", store.gap_limit))),
        (StoreModel.wallet, wallet),
        (StoreModel.contact_email, _check_email(settings.get("contact_email", store.contact_email))),
        (StoreModel.default_language, _check_language(settings.get("default_language", store.default_language))),
    ]
    old_claim, new_claim = _claim_of(store.store_id, store.wallet), _claim_of(store.store_id, wallet)
    if old_claim is not None and new_claim is not None and old_claim.key == new_claim.key:
        old_claim = new_claim = None
    same_wallet = StoreModel.wallet == store.wallet if store.wallet else StoreModel.wallet.does_not_exist()
    try:
        with transaction() as writes:
            # pynamodb sends deletes, then puts, then updates: the new claim is item 0 or 1.
            if old_claim is not None:
                writes.delete(old_claim, condition=_free_or_mine(store.store_id))
            if new_claim is not None:
                writes.save(new_claim, condition=_free_or_mine(store.store_id))
            writes.update(
                store,
                actions=[
                    attribute.set(value) if value is not None else attribute.remove() for attribute, value in values
                ],
                condition=StoreModel.store_id.exists() & same_wallet,
            )
    except TransactWriteError as exc:
        failed = failed_conditions(exc)
        position = int(old_claim is not None)
        if new_claim is not None and len(failed) > position and failed[position]:
            raise BadRequest(WALLET_TAKEN) from exc
        if any(failed):
            raise BadRequest(
                "The store's wallet was changed meanwhile (in another window?): reload and try again."
            ) from exc
        raise
    for attribute, value in values:
        setattr(store, attribute.attr_name, value)
    return store


def set_wallet(store: StoreModel, wallet: str | None) -> StoreModel:
    """Change the wallet alone (the CLI): every other setting as saved, through the same checks and claims."""
    return update_settings(store, {**store.attribute_values, "wallet": wallet})


def allow_public_invoices(store: StoreModel, allowed: bool) -> None:
    """BTCPay's "anyone can create invoice": unsigned POST /invoices?storeId= makes invoices for the store."""
    store.update(actions=[StoreModel.anyone_can_invoice.set(allowed)])


def get_store(store_id: str, consistent: bool = False) -> StoreModel | None:
    if not store_id or len(store_id) > 64:
        return None
    try:
        return StoreModel.get(store_id, consistent_read=consistent)
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


def invoicing_store(store_id: str) -> StoreModel:
    """The store as an invoice for it is made now (read strongly: its wallet may just have changed)."""
    # pragma below: moto's reads are always consistent, so dropping `consistent` cannot fail a test offline.
    store = get_store(store_id, consistent=True)  # pragma: no mutate
    if store is None or not store.wallet:
        raise BadRequest(_NO_WALLET)
    return store


def reserve_address_index(store: StoreModel) -> int:
    """Advance the store's address counter atomically and return the index to use.

    Conditioned on the wallet `store` was read with, so the index is that wallet's.
    Call it last, after every check a request can fail: a reserved index is never
    handed out again, and each one left unused widens the gap a wallet must look across.
    """
    reserved = StoreModel(store.store_id)
    try:
        reserved.update(actions=[StoreModel.next_address_index.add(1)], condition=StoreModel.wallet == store.wallet)
    except UpdateError as exc:
        if condition_failed(exc):
            raise BadRequest("This store's wallet was changed meanwhile: create the invoice again") from exc
        raise
    return reserved.next_address_index - 1
