"""BitId: a client's secp256k1 key, its SIN, and signatures over requests.

The SIN is BitPay's "client id": base58check of 0x0F 0x02 followed by
RIPEMD160(SHA256(public key bytes as the client sent them)).
"""

import hashlib

import base58
from coincurve import PublicKey
from coincurve._libsecp256k1 import lib
from coincurve.context import GLOBAL_CONTEXT
from coincurve.ecdsa import der_to_cdata

SIN_PREFIX = b"\x0f\x02"
SIN_LENGTH = 35
_MAX_DER_SIGNATURE_BYTES = 72


def _ripemd160_from_library(data: bytes) -> bytes:
    # embit ships a pure-Python RIPEMD-160 for OpenSSL 3 builds that dropped it.
    from embit.util.py_ripemd160 import ripemd160

    return ripemd160(data)


def ripemd160(data: bytes) -> bytes:
    try:
        return hashlib.new("ripemd160", data).digest()
    except ValueError:
        return _ripemd160_from_library(data)


class InvalidKey(ValueError):
    pass


def parse_public_key(public_key_hex: str) -> bytes:
    """The key bytes as sent (compressed or uncompressed), checked to be a curve point."""
    try:
        key_bytes = bytes.fromhex(public_key_hex)
        PublicKey(key_bytes)
    except (ValueError, TypeError) as exc:
        raise InvalidKey("x-identity is not a hex-encoded secp256k1 public key") from exc
    return key_bytes


def sin_from_public_key(public_key_hex: str) -> str:
    key_bytes = parse_public_key(public_key_hex)
    version = SIN_PREFIX + ripemd160(hashlib.sha256(key_bytes).digest())
    return base58.b58encode_check(version).decode()


def is_valid_sin(sin: object) -> bool:
    if not isinstance(sin, str) or len(sin) != SIN_LENGTH:
        return False
    try:
        payload = base58.b58decode_check(sin)
    except ValueError:
        return False
    return len(payload) == 22 and payload.startswith(SIN_PREFIX)


def verify_signature(public_key: bytes, message: bytes, signature_hex: str) -> bool:
    """True when `signature_hex` (DER) signs SHA256(message) with `public_key`."""
    return signs_one_of(public_key, [message], b"", signature_hex)


def signs_one_of(public_key: bytes, prefixes: list[bytes], body: bytes, signature_hex: str) -> bool:
    """True when `signature_hex` (DER) signs SHA256(prefix + body) for one of `prefixes` with `public_key`.

    The key and signature are parsed once for all prefixes (a request's candidate URLs), and the
    body is fed to each hash as it is, never copied behind each URL. SHA-256 takes the URL first,
    so each candidate still reads the body: callers bound it first (ApiRequest.check_body_size).

    Client libraries built on python-ecdsa or elliptic emit high-S signatures
    about half the time; libsecp256k1 accepts only low-S, so S is normalised
    first. Malformed hex or DER is simply not a valid signature.
    """
    try:
        der = bytes.fromhex(signature_hex)
        if len(der) > _MAX_DER_SIGNATURE_BYTES:
            return False
        signature = der_to_cdata(der)
        key = PublicKey(public_key)
    except (ValueError, TypeError):
        return False
    lib.secp256k1_ecdsa_signature_normalize(GLOBAL_CONTEXT.ctx, signature, signature)
    for prefix in prefixes:
        digest = hashlib.sha256(prefix)
        digest.update(body)
        if lib.secp256k1_ecdsa_verify(GLOBAL_CONTEXT.ctx, signature, digest.digest(), key.public_key):
            return True
    return False
