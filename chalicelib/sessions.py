"""Signed-in browsers: server-side sessions with a TTL, their CSRF tokens, and the sign-in throttle.

The session cookie holds a random secret; the table keeps only its SHA-256,
so reading the table does not let anyone sign in as a merchant. Failed
sign-ins are counted per account and per client address in a fixed window
(a TTL item); past the limit, sign-in is refused until the window ends.
"""

import hashlib
import hmac
import math
import secrets
from datetime import UTC, datetime, timedelta

from pynamodb.exceptions import UpdateError

from . import users
from .errors import BadRequest, TooManyRequests, Unauthorized
from .models import LoginFailureModel, SessionModel, UserModel, condition_failed, is_expired

SESSION_TTL = timedelta(hours=12)
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
# Higher than per account: many people may share one address (an office, a mobile carrier's NAT).
MAX_FAILURES_PER_ADDRESS = 20
_MAX_SECRET_LENGTH = 100
_MAX_LOGIN_KEY_LENGTH = 100


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
    for other in SessionModel.by_login.query(session.login):
        if other.session_hash != session.session_hash:
            other.delete()


# The sign-in throttle


def _failure_keys(login: str, address: str) -> list[str]:
    keys = [f"login#{login.strip().lower()[:_MAX_LOGIN_KEY_LENGTH]}"]
    if address:
        keys.append(f"address#{address}")
    return keys


def _limit(key: str) -> int:
    return MAX_FAILURES_PER_ACCOUNT if key.startswith("login#") else MAX_FAILURES_PER_ADDRESS


def check_throttle(login: str, address: str) -> None:
    """Refuse a sign-in while the account or the address has failed too often in the window."""
    for counter in LoginFailureModel.batch_get(_failure_keys(login, address)):
        if not is_expired(counter.expiration) and counter.failures >= _limit(counter.key):
            minutes = max(1, math.ceil((counter.expiration - datetime.now(UTC)).total_seconds() / 60))
            raise TooManyRequests(
                "Too many failed sign-ins for this account or from this address, so sign-in is paused. "
                f"Try again in {minutes} minute{'s' if minutes > 1 else ''}."
            )


def record_failure(login: str, address: str) -> None:
    for key in _failure_keys(login, address):
        counter = LoginFailureModel(key)
        try:
            # Counts only within a live window: an expired item may linger until DynamoDB deletes it.
            counter.update(
                actions=[LoginFailureModel.failures.add(1)],
                condition=LoginFailureModel.expiration > datetime.now(UTC),
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            LoginFailureModel(key, failures=1, expiration=FAILURE_WINDOW).save()


def _throttled_credentials(login: str, password: str, address: str) -> UserModel | None:
    """The user these credentials name, checked under the throttle; a wrong one counts as a failure."""
    check_throttle(login, address)
    user = users.check_credentials(login, password)
    if user is None:
        record_failure(login, address)
    return user


def sign_in(login: str, password: str, address: str) -> tuple[str, SessionModel]:
    """Check the credentials (throttled) and start a session: the cookie's secret and the session."""
    user = _throttled_credentials(login, password, address)
    if user is None:
        raise Unauthorized("Wrong login or password.")
    LoginFailureModel(_failure_keys(login, "")[0]).delete()
    return start(user.login)


def change_password(session: SessionModel, address: str, current: str, new: str, confirmation: str) -> None:
    """Change the signed-in user's password and sign out their other sessions.

    The current password is checked under the same throttle as sign-in, so a
    stolen session cookie cannot be used to guess it.
    """
    user = _throttled_credentials(session.login, current, address)
    if user is None:
        raise BadRequest("The current password is wrong.")
    if new != confirmation:
        raise BadRequest("The new password and its confirmation differ.")
    users.set_password(user, new)
    end_others(session)
