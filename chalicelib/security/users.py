"""Merchant accounts: logins and scrypt password hashes."""

import hashlib
import hmac
import secrets
from functools import lru_cache

from pynamodb.exceptions import PutError

from chalicelib.errors import BadRequest
from chalicelib.models import UserModel, condition_failed

# scrypt cost: 2**14 x 8 uses 16 MiB and ~50 ms, within a Lambda's budget.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(candidate.hex(), digest)


def normalise_login(login: str) -> str:
    login = login.strip().lower()
    if not 3 <= len(login) <= 100 or any(c.isspace() for c in login):
        raise BadRequest("login must be 3 to 100 characters without spaces")
    return login


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequest(f"password must be at least {MIN_PASSWORD_LENGTH} characters")


def create_user(login: str, password: str, *, is_admin: bool = False) -> UserModel:
    check_password_strength(password)
    user = UserModel(normalise_login(login), password_hash=hash_password(password), is_admin=is_admin)
    try:
        user.save(condition=UserModel.login.does_not_exist())
    except PutError as exc:
        if condition_failed(exc):
            raise BadRequest(f"a user named {user.login} already exists") from exc
        raise
    return user


def get_user(login: str) -> UserModel | None:
    try:
        return UserModel.get(login.strip().lower())
    except UserModel.DoesNotExist:
        return None


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    return hash_password(secrets.token_hex(16))


def check_credentials(login: str, password: str) -> UserModel | None:
    user = get_user(login) if login else None
    # Hash for an unknown login too, so the response time does not tell which logins exist.
    matches = password_matches(password, user.password_hash if user is not None else _decoy_hash())
    return user if user is not None and matches else None


def set_password(user: UserModel, password: str) -> None:
    check_password_strength(password)
    user.update(actions=[UserModel.password_hash.set(hash_password(password))])
