"""Signed-in browsers: server-side sessions with a TTL, their CSRF tokens, and the sign-in throttle.

The session cookie holds a random secret; the table keeps only its SHA-256,
so reading the table does not let anyone sign in as a merchant. Sign-in
attempts are counted (chalicelib.security.limits) per account and per client address
before the password is checked, and given back when it is right; past a
limit, sign-in is refused until the window ends. A successful sign-in leaves
a device cookie (OWASP's "Slow Down Online Guessing Attacks with Device
Cookies"): HMAC-signed with a key made once per deployment and kept in the
secrets table, it names the login, and a browser presenting it is counted
against its own cookie rather than the account.
"""

import base64
import functools
import hashlib
import hmac
import secrets
from datetime import timedelta

from chalicelib.errors import BadRequest, Unauthorized
from chalicelib.models import SecretModel, SessionModel, UserModel, is_expired
from chalicelib.security import limits, users
from chalicelib.settings import get_settings

SESSION_TTL = timedelta(hours=12)
DEVICE_COOKIE_TTL = timedelta(days=365)
_DEVICE_KEY_NAME = "device-cookie-key"
_MAX_SECRET_LENGTH = 100
_MAX_LOGIN_KEY_LENGTH = 100
_MAX_DEVICE_COOKIE_LENGTH = 400


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def start(login: str) -> tuple[str, SessionModel]:
    """A new session for `login`: the cookie's secret, and the session as stored."""
    secret = secrets.token_urlsafe(32)
    session = SessionModel(
        _hash(secret),
        login=login,
        csrf_token=new_csrf_token(),
        expiration=SESSION_TTL,
    )
    session.save(condition=SessionModel.session_hash.does_not_exist())
    return secret, session


def find(secret: str | None) -> SessionModel | None:
    """The live session behind a cookie's secret, if any."""
    if not secret or len(secret) > _MAX_SECRET_LENGTH:
        return None
    try:
        session = SessionModel.get(_hash(secret))
    except SessionModel.DoesNotExist:
        return None
    return None if is_expired(session.expiration) else session


def end(session: SessionModel) -> None:
    session.delete()


def end_others(session: SessionModel) -> None:
    """Sign the account out everywhere but here (after a password change)."""
    end_all(session.login, keep=session)


def end_all(login: str, keep: SessionModel | None = None) -> None:
    """Sign the account out everywhere (but `keep`)."""
    for other in SessionModel.by_login.query(login):
        if keep is None or other.session_hash != keep.session_hash:
            other.delete()


# The sign-in throttle, with OWASP's device cookies


@functools.cache
def device_key() -> bytes:
    """The device cookies' HMAC key, read once per container; the first caller of a deployment makes it."""
    item = SecretModel(_DEVICE_KEY_NAME)
    # One UpdateItem makes the key or reads it: racing first callers all get the one that was stored.
    item.update(actions=[SecretModel.value.set(SecretModel.value | secrets.token_urlsafe(32))])
    return item.value.encode()


def _device_mac(payload: str) -> str:
    return hmac.new(device_key(), payload.encode(), hashlib.sha256).hexdigest()


def _account(login: str) -> str:
    return login.strip().lower()[:_MAX_LOGIN_KEY_LENGTH]


def new_device_cookie(login: str) -> str:
    """Proof that this browser once signed in to `login`: a random id and the login, signed by the server."""
    payload = base64.urlsafe_b64encode(f"{secrets.token_urlsafe(16)}:{_account(login)}".encode()).decode()
    return f"{payload}.{_device_mac(payload)}"


def _device_id(device_cookie: str | None, login: str) -> str | None:
    """The device cookie's id when it is genuine and was issued for this login; None otherwise."""
    if not device_cookie or len(device_cookie) > _MAX_DEVICE_COOKIE_LENGTH:
        return None
    payload, _, mac = device_cookie.rpartition(".")
    if not payload or not hmac.compare_digest(mac.encode(), _device_mac(payload).encode()):
        return None
    device_id, _, cookie_login = base64.urlsafe_b64decode(payload).decode().partition(":")
    return device_id if cookie_login == _account(login) else None


def _attempt(login: str, address: str, device_cookie: str | None) -> list[limits.Count]:
    """Count a sign-in attempt before its password is checked, and refuse it past a limit.

    A browser holding this account's device cookie counts against its own
    cookie instead of the account, so guesses from elsewhere never lock the
    owner out of a known browser.
    """
    settings = get_settings()
    device_id = _device_id(device_cookie, login)
    if device_id is not None:
        counts = [limits.count("sign-in-device", device_id, settings.sign_in_failures_per_device)]
    else:
        counts = [limits.count("sign-in-account", _account(login), settings.sign_in_failures_per_account)]
    if address:
        counts.append(limits.count("sign-in-address", limits.client(address), settings.sign_in_failures_per_address))
    limits.refuse_over(counts, "Too many failed sign-ins for this account or from this address, so sign-in is paused.")
    return counts


def _throttled_credentials(login: str, password: str, address: str, device_cookie: str | None) -> UserModel | None:
    """The user these credentials name, checked under the throttle; only a wrong one stays counted."""
    counts = _attempt(login, address, device_cookie)
    user = users.check_credentials(login, password)
    if user is not None:
        for counted in counts:
            limits.refund(counted)
    return user


def sign_in(login: str, password: str, address: str, device_cookie: str | None) -> tuple[str, SessionModel, str]:
    """Check the credentials (throttled) and start a session: the cookie's secret, the session, a device cookie."""
    user = _throttled_credentials(login, password, address, device_cookie)
    if user is None:
        raise Unauthorized("Wrong login or password.")
    secret, session = start(user.login)
    return secret, session, new_device_cookie(user.login)


def change_password(
    session: SessionModel, address: str, device_cookie: str | None, current: str, new: str, confirmation: str
) -> None:
    """Change the signed-in user's password and sign out their other sessions.

    The current password is checked under the same throttle as sign-in, so a
    stolen session cookie cannot be used to guess it.
    """
    user = _throttled_credentials(session.login, current, address, device_cookie)
    if user is None:
        raise BadRequest("The current password is wrong.")
    if new != confirmation:
        raise BadRequest("The new password and its confirmation differ.")
    users.set_password(user, new)
    end_others(session)
