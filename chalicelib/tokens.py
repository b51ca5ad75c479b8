"""API tokens and the two pairing flows that make them.

Client-side pairing: a client asks for a token for its SIN; the token stays
pending until a person approves it for one of their stores. Server-side
pairing: the merchant makes a pairing code for a store; a client claims it.
Either way a pairing code works once and expires (TTL) until it is used.
"""

import hashlib
import secrets
from datetime import timedelta

import base58
from pynamodb.exceptions import DeleteError, UpdateError

from .errors import BadRequest, NotFound
from .identity import is_valid_sin
from .models import TokenModel, condition_failed
from .settings import get_settings

PAIRABLE_FACADES = ("pos", "merchant")
PAIRING_CODE_LENGTH = 7
_MAX_TOKEN_LENGTH = 128
_USED = "The specified pairingCode has already been used"
_BASE58_ALPHABET = base58.BITCOIN_ALPHABET.decode()


def _new_token_value() -> str:
    return base58.b58encode(secrets.token_bytes(32)).decode()


def _new_pairing_code() -> str:
    return "".join(secrets.choice(_BASE58_ALPHABET) for _ in range(PAIRING_CODE_LENGTH))


def _check_facade(facade: object) -> str:
    if facade not in PAIRABLE_FACADES:
        raise BadRequest(f"facade must be one of {', '.join(PAIRABLE_FACADES)}")
    return facade


def _check_sin(sin: object) -> str:
    if not is_valid_sin(sin):
        raise BadRequest("id must be a valid SIN (client id): 35 base58 characters starting with T")
    return sin


def _check_label(label: object) -> str | None:
    if label is None:
        return None
    if not isinstance(label, str) or len(label) > 100:
        raise BadRequest("label must be a string of at most 100 characters")
    return label.strip() or None


def find(token_value: str) -> TokenModel | None:
    """The token with this value; an expired pending one counts as absent."""
    # "#" is not base58: such keys are API keys' hashes (api_keys), which must never work as a token.
    if not 0 < len(token_value) <= _MAX_TOKEN_LENGTH or "#" in token_value:
        return None
    try:
        # Strongly consistent: a token revoked a moment ago must already fail.
        token = TokenModel.get(token_value, consistent_read=True)
    except TokenModel.DoesNotExist:
        return None
    return None if token.is_expired else token


def find_pairing(pairing_code: object) -> TokenModel:
    """The pending token behind a pairing code, with BitPay's errors for the others."""
    if not isinstance(pairing_code, str) or len(pairing_code) != PAIRING_CODE_LENGTH:
        raise NotFound("The specified pairingCode is not found")
    token = next(iter(TokenModel.by_pairing_code.query(pairing_code, limit=1)), None)
    if token is None:
        raise NotFound("The specified pairingCode is not found")
    if token.is_expired:
        raise BadRequest("The specified pairingCode has expired")
    if token.status != TokenModel.PENDING:
        raise BadRequest(_USED)
    return token


def _new_pending(facade: str, *, label: str | None, sin: str | None, store_id: str | None) -> TokenModel:
    token = TokenModel(
        _new_token_value(),
        facade=facade,
        status=TokenModel.PENDING,
        sin=sin,
        store_id=store_id,
        label=label,
        pairing_code=_new_pairing_code(),
        pairing_expiration=timedelta(seconds=get_settings().pairing_ttl_seconds),
    )
    token.save(condition=TokenModel.token.does_not_exist())
    return token


def request_pairing(sin: object, facade: object, label: object = None) -> TokenModel:
    """Client-side pairing: a pending token for this SIN, waiting for a person to approve it."""
    return _new_pending(_check_facade(facade), label=_check_label(label), sin=_check_sin(sin), store_id=None)


def create_pairing_code(store_id: str, facade: object, label: object = None, sin: object = None) -> TokenModel:
    """Server-side pairing: a code for this store that a client claims (only `sin`, when given)."""
    return _new_pending(
        _check_facade(facade),
        label=_check_label(label),
        sin=None if sin is None else _check_sin(sin),
        store_id=store_id,
    )


def _ensure_single_store(sin: str, store_id: str) -> None:
    for token in TokenModel.by_sin.query(sin):
        if token.status == TokenModel.ACTIVE and token.store_id != store_id:
            raise BadRequest("This client id is already paired with another store; pair a new key for this store")


def _activate(token: TokenModel, *, store_id: str, sin: str | None) -> TokenModel:
    if sin is not None:
        _ensure_single_store(sin, store_id)
    actions = [
        TokenModel.status.set(TokenModel.ACTIVE),
        TokenModel.store_id.set(store_id),
        TokenModel.pairing_expiration.remove(),
    ]
    if sin is not None:
        actions.append(TokenModel.sin.set(sin))
    would_have_expired = token.pairing_expiration
    try:
        # The condition makes a code work once even when two requests race.
        token.update(actions=actions, condition=TokenModel.status == TokenModel.PENDING)
    except UpdateError as exc:
        if condition_failed(exc):
            raise BadRequest(_USED) from exc
        raise
    # BitPay and BTCPay still answer a claim with the moment the code would have expired.
    token.pairing_expiration = would_have_expired
    return token


def claim(pairing_code: object, sin: object = None) -> TokenModel:
    """A client claims a merchant-made code; without a SIN only a pos code, used unsigned."""
    token = find_pairing(pairing_code)
    if token.store_id is None:
        raise BadRequest("This pairingCode must be approved by the merchant, not claimed")
    if sin is None:
        if token.facade != "pos" or token.sin is not None:
            raise BadRequest("id (the client's SIN) is required to claim this pairingCode")
    else:
        sin = _check_sin(sin)
        if token.sin is not None and token.sin != sin:
            raise BadRequest("This pairingCode was made for another client id")
    return _activate(token, store_id=token.store_id, sin=sin)


def _client_request(pairing_code: str) -> TokenModel:
    """The pending pairing a client asked for, which a person approves or denies."""
    token = find_pairing(pairing_code)
    if token.store_id is not None:
        raise BadRequest("This pairingCode is claimed by a client, not approved")
    return token


def approve(pairing_code: str, store_id: str) -> TokenModel:
    """A person approves a client's pairing request for one of their stores."""
    token = _client_request(pairing_code)
    return _activate(token, store_id=store_id, sin=token.sin)


def deny(pairing_code: str) -> None:
    try:
        # Conditional, so a deny racing an approval cannot delete the token just made active.
        _client_request(pairing_code).delete(condition=TokenModel.status == TokenModel.PENDING)
    except DeleteError as exc:
        if condition_failed(exc):
            raise BadRequest(_USED) from exc
        raise


def revoke(token_value: str, store_id: str) -> None:
    token = find(token_value)
    if token is None or token.store_id != store_id:
        raise NotFound("Token not found")
    token.update(actions=[TokenModel.status.set(TokenModel.REVOKED), TokenModel.pairing_expiration.remove()])


def active_for_sin(sin: str) -> list[TokenModel]:
    return [token for token in TokenModel.by_sin.query(sin) if token.status == TokenModel.ACTIVE]


def for_store(store_id: str) -> list[TokenModel]:
    """The store's tokens, newest first, active and pending (unexpired) alike."""
    return [
        token
        for token in TokenModel.by_store.query(store_id, scan_index_forward=False)
        if token.status != TokenModel.REVOKED and not token.is_expired
    ]


def reference(token: TokenModel) -> str:
    """Names a token in pages and forms without showing its value, which is a credential."""
    return hashlib.sha256(token.token.encode()).hexdigest()[:24]


def find_in_store(store_id: str, token_reference: str) -> TokenModel:
    token = next((token for token in for_store(store_id) if reference(token) == token_reference), None)
    if token is None:
        raise NotFound("Token not found")
    return token


def show_value_once(store_id: str, token_reference: str) -> TokenModel:
    """An active token of the store whose value the merchant may see this one time (to paste into a plugin).

    Conditional, so two clicks racing each other cannot both see it.
    """
    token = find_in_store(store_id, token_reference)
    if token.status != TokenModel.ACTIVE:
        raise BadRequest("Only a paired token has a value to show")
    try:
        token.update(
            actions=[TokenModel.value_shown.set(True)],
            condition=(TokenModel.status == TokenModel.ACTIVE) & TokenModel.value_shown.does_not_exist(),
        )
    except UpdateError as exc:
        if condition_failed(exc):
            raise BadRequest("This token's value has already been shown once; revoke it and pair anew") from exc
        raise
    return token


def pairing_view(token: TokenModel) -> dict:
    """One item of BitPay's POST /tokens response."""
    view: dict = {
        "policies": [
            {
                "policy": "id",
                "method": "active" if token.status == TokenModel.ACTIVE else "inactive",
                "params": [token.sin] if token.sin else [],
            }
        ],
        "token": token.token,
        "facade": token.facade,
        "dateCreated": token.created,
        "pairingCode": token.pairing_code,
    }
    if token.label:
        view["label"] = token.label
    if token.pairing_expiration is not None:
        view["pairingExpiration"] = int(token.pairing_expiration.timestamp() * 1000)
    return view
