"""API tokens and the two pairing flows that make them.

Client-side pairing: a client asks for a token for its SIN; the token stays
pending until a person approves it for one of their stores. Server-side
pairing: the merchant makes a pairing code for a store; a client claims it.
Either way a pairing code works once and expires (TTL) until it is used.

Guessing is bounded (chalicelib.security.limits): failed pairing attempts per client
address, pending tokens made per address, and wrong tries naming one code,
which burn it. A token becomes active in one transaction with its client
id's store (one store per SIN, however claims race) and, for a code a
merchant's client made, a check that the maker's token is still active: a
revoked client cannot come back through a code it made before.
"""

import hashlib
import secrets
from datetime import timedelta

import base58
from pynamodb.exceptions import DeleteError, TransactWriteError, UpdateError

from chalicelib.errors import BadRequest, NotFound
from chalicelib.fields import text
from chalicelib.models import ClaimModel, TokenModel, condition_failed, failed_conditions, transaction
from chalicelib.security import api_keys, limits
from chalicelib.security.identity import is_valid_sin
from chalicelib.settings import get_settings

PAIRABLE_FACADES = ("pos", "merchant")
PAIRING_CODE_LENGTH = 7
_MAX_TOKEN_LENGTH = 128
_USED = "The specified pairingCode has already been used"
_REVOKED = "The specified pairingCode has been revoked"
_OTHER_STORE = "This client id is already paired with another store; pair a new key for this store"
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
    return (text(label, "label", 100) or "").strip() or None


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
    if token.status == TokenModel.REVOKED:
        raise BadRequest(_REVOKED)
    if token.status != TokenModel.PENDING:
        raise BadRequest(_USED)
    return token


def _count_attempt(address: str) -> limits.Count | None:
    """Count a pairing attempt from this address before it is looked at; only a failure stays counted."""
    if not address:
        return None
    return limits.hit(
        "pairing-address",
        limits.client(address),
        get_settings().pairing_failures_per_address,
        "Too many failed pairing attempts from this address.",
    )


def _succeeded(attempt: limits.Count | None) -> None:
    if attempt is not None:
        limits.refund(attempt)


def _wrong_try(token: TokenModel, message: str) -> BadRequest:
    """The refusal of a request naming this pending code wrongly; past its limit the code is burned."""
    counted = limits.count("pairing-code", reference(token), get_settings().pairing_failures_per_code)
    if counted.hits >= counted.rate.count:
        _revoke_pending(token)
        return BadRequest(f"{message}. Too many wrong tries: this pairingCode is revoked, make a new one")
    return BadRequest(message)


def _revoke_pending(token: TokenModel) -> None:
    try:
        # Conditional: a code claimed a moment ago stays the active token it became.
        token.update(
            actions=[TokenModel.status.set(TokenModel.REVOKED)], condition=TokenModel.status == TokenModel.PENDING
        )
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


def _new_pending(
    facade: str, *, label: str | None, sin: str | None, store_id: str | None, minted_by: str | None = None
) -> TokenModel:
    token = TokenModel(
        _new_token_value(),
        facade=facade,
        status=TokenModel.PENDING,
        sin=sin,
        store_id=store_id,
        label=label,
        pairing_code=_new_pairing_code(),
        pairing_expiration=timedelta(seconds=get_settings().pairing_ttl_seconds),
        minted_by=minted_by,
    )
    token.save(condition=TokenModel.token.does_not_exist())
    return token


def request_pairing(sin: object, facade: object, label: object = None, *, address: str = "") -> TokenModel:
    """Client-side pairing: a pending token for this SIN, waiting for a person to approve it."""
    facade, label, sin = _check_facade(facade), _check_label(label), _check_sin(sin)
    if address:
        limits.hit(
            "pending-address",
            limits.client(address),
            get_settings().pending_tokens_per_address,
            "Too many pairing requests from this address.",
        )
    return _new_pending(facade, label=label, sin=sin, store_id=None)


def create_pairing_code(
    store_id: str, facade: object, label: object = None, sin: object = None, *, minted_by: str | None = None
) -> TokenModel:
    """Server-side pairing: a code for this store that a client claims (only `sin`, when given).

    `minted_by` is the merchant token of a client asking for the code: revoking that token revokes it.
    """
    return _new_pending(
        _check_facade(facade),
        label=_check_label(label),
        sin=None if sin is None else _check_sin(sin),
        store_id=store_id,
        minted_by=minted_by,
    )


def _activate(token: TokenModel, *, store_id: str, sin: str | None) -> TokenModel:
    actions = [
        TokenModel.status.set(TokenModel.ACTIVE),
        TokenModel.store_id.set(store_id),
        TokenModel.pairing_expiration.remove(),
    ]
    if sin is not None:
        actions.append(TokenModel.sin.set(sin))
    minted = token.minted_by is not None
    try:
        with transaction() as writes:
            if minted:
                writes.condition_check(TokenModel, token.minted_by, condition=TokenModel.status == TokenModel.ACTIVE)
            if sin is not None:
                writes.save(
                    ClaimModel(f"sin#{sin}", store_id=store_id),
                    condition=ClaimModel.key.does_not_exist() | (ClaimModel.store_id == store_id),
                )
            # The condition makes a code work once even when two requests race.
            writes.update(token, actions, condition=TokenModel.status == TokenModel.PENDING)
    except TransactWriteError as exc:
        if not condition_failed(exc):
            raise
        # Each condition's refusal, in the order pynamodb sends them: condition checks, puts, updates.
        refusals = [_REVOKED] * minted + [_OTHER_STORE] * (sin is not None) + [_USED]
        failed = [refusal for refusal, lost in zip(refusals, failed_conditions(exc), strict=False) if lost]
        raise BadRequest(failed[0] if failed else _USED) from exc
    # BitPay and BTCPay still answer a claim with the moment the code would have expired: kept in the view.
    token.status, token.store_id = TokenModel.ACTIVE, store_id
    token.sin = sin if sin is not None else token.sin
    return token


def claim(pairing_code: object, sin: object = None, *, address: str = "") -> TokenModel:
    """A client claims a merchant-made code; without a SIN only a pos code, used unsigned."""
    attempt = _count_attempt(address)
    token = find_pairing(pairing_code)
    if token.store_id is None:
        raise _wrong_try(token, "This pairingCode must be approved by the merchant, not claimed")
    if sin is None:
        if token.facade != "pos" or token.sin is not None:
            raise _wrong_try(token, "id (the client's SIN) is required to claim this pairingCode")
    else:
        sin = _check_sin(sin)
        if token.sin is not None and token.sin != sin:
            raise _wrong_try(token, "This pairingCode was made for another client id")
    activated = _activate(token, store_id=token.store_id, sin=sin)
    _succeeded(attempt)
    return activated


def client_request(pairing_code: object, *, address: str = "") -> TokenModel:
    """The pending pairing a client asked for, which a person approves or denies."""
    attempt = _count_attempt(address)
    token = find_pairing(pairing_code)
    if token.store_id is not None:
        # Approving or denying a merchant-made code would let anyone holding it act on another store.
        raise _wrong_try(
            token, "This code was made in a store's Access tokens page for a client to claim: nothing to approve"
        )
    _succeeded(attempt)
    return token


def approve(pairing_code: str, store_id: str) -> TokenModel:
    """A person approves a client's pairing request for one of their stores."""
    token = client_request(pairing_code)
    return _activate(token, store_id=store_id, sin=token.sin)


def deny(pairing_code: str) -> None:
    try:
        # Conditional, so a deny racing an approval cannot delete the token just made active.
        client_request(pairing_code).delete(condition=TokenModel.status == TokenModel.PENDING)
    except DeleteError as exc:
        if condition_failed(exc):
            raise BadRequest(_USED) from exc
        raise


def revoke(token_value: str, store_id: str) -> None:
    """Revoke a token and every pending code its client made."""
    token = find(token_value)
    if token is None or token.store_id != store_id:
        raise NotFound("Token not found")
    token.update(actions=[TokenModel.status.set(TokenModel.REVOKED), TokenModel.pairing_expiration.remove()])
    # The index is eventually consistent: a code it does not list yet is refused at its claim (see _activate).
    for minted in TokenModel.by_minter.query(token.token, filter_condition=TokenModel.status == TokenModel.PENDING):
        _revoke_pending(minted)


def active_for_sin(sin: str) -> list[TokenModel]:
    return [token for token in TokenModel.by_sin.query(sin) if token.status == TokenModel.ACTIVE]


def for_store(store_id: str) -> list[TokenModel]:
    """The store's tokens, newest first, active and pending (unexpired) alike; not its API key (api_keys)."""
    return [
        token
        for token in TokenModel.by_store.query(store_id, scan_index_forward=False)
        if token.status != TokenModel.REVOKED and not token.is_expired and not api_keys.is_api_key(token)
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
