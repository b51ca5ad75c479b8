"""The legacy API key: one per store, what BTCPay's legacy API gives plugins such as WHMCS's.

A request with `Authorization: Basic base64(KEY)` (or `base64(KEY:)`, a user name with no
password) acts with the merchant facade for the key's store, unsigned. Only the key's
SHA-256 is stored, as the key of an item in the tokens table, so a key is found with one
strongly consistent GetItem and a revoked one fails at once; the store names its current
key so that a new one revokes the old in the same transaction.
"""

import base64
import binascii
import hashlib
import secrets

import base58
from pynamodb.exceptions import TransactWriteError

from chalicelib.errors import BadRequest
from chalicelib.models import StoreModel, TokenModel, condition_failed, transaction

# Item keys in the tokens table; "#" is not in base58, so no token value has this form.
PREFIX = "apikey#"
LABEL = "Legacy API key"
_MAX_HEADER = 200


def _item_key(key: str) -> str:
    return PREFIX + hashlib.sha256(key.encode()).hexdigest()


def key_from_header(authorization: str) -> str | None:
    """The key in an `Authorization: Basic` header, None when the header is not Basic or not readable."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded or len(encoded) > _MAX_HEADER:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def find(key: str) -> TokenModel | None:
    """The active key item for this key, None for any other key."""
    item_key = _item_key(key)
    try:
        item = TokenModel.get(item_key, consistent_read=True)
    except TokenModel.DoesNotExist:
        return None
    # The lookup was by hash; compare again in constant time so no code path compares secrets early-out.
    if not secrets.compare_digest(item.token, item_key) or item.status != TokenModel.ACTIVE:
        return None
    return item


def _replace(store: StoreModel, new_item: TokenModel | None) -> None:
    """Point the store at `new_item` (None: at no key) and revoke its old key, all or nothing."""
    old = store.api_key
    unchanged = StoreModel.api_key.does_not_exist() if old is None else StoreModel.api_key == old
    try:
        with transaction() as writes:
            action = StoreModel.api_key.set(new_item.token) if new_item else StoreModel.api_key.remove()
            writes.update(store, [action], condition=unchanged)
            if new_item is not None:
                writes.save(new_item, condition=TokenModel.token.does_not_exist())
            if old is not None:
                writes.update(TokenModel(old), [TokenModel.status.set(TokenModel.REVOKED)])
    except TransactWriteError as exc:
        if condition_failed(exc):
            raise BadRequest("The store's API key changed meanwhile; reload the page and try again") from exc
        raise
    store.api_key = new_item.token if new_item else None


def generate(store: StoreModel) -> str:
    """A new key for the store, replacing (revoking) any it had; the only time the key is seen."""
    key = base58.b58encode(secrets.token_bytes(32)).decode()
    item = TokenModel(_item_key(key), facade="merchant", status=TokenModel.ACTIVE, store_id=store.store_id, label=LABEL)
    _replace(store, item)
    return key


def revoke(store: StoreModel) -> None:
    if store.api_key is None:
        raise BadRequest("This store has no API key")
    _replace(store, None)


def is_api_key(token: TokenModel) -> bool:
    return token.token.startswith(PREFIX)
