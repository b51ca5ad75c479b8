"""SINs and signatures, checked against independent implementations.

Keys and signatures come from python-ecdsa, pyca/cryptography and the BitPay
client libraries' own SIN functions; the service verifies with coincurve.
"""

import hashlib

import base58
import bitpay.key_utils
import btcpay.crypto
import ecdsa
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ecdsa.util import sigdecode_der, sigencode_der

from chalicelib.security import identity

CURVE_ORDER = ecdsa.SECP256k1.order


def _public_hex(key: ec.EllipticCurvePrivateKey, compressed: bool) -> str:
    formats = serialization.PublicFormat
    encoding = formats.CompressedPoint if compressed else formats.UncompressedPoint
    return key.public_key().public_bytes(serialization.Encoding.X962, encoding).hex()


def _reference_sin(public_key_hex: str) -> str:
    """BitPay's SIN written out from its definition, with nothing shared with the service's code."""
    digest = hashlib.new("ripemd160", hashlib.sha256(bytes.fromhex(public_key_hex)).digest()).digest()
    version = b"\x0f\x02" + digest
    checksum = hashlib.sha256(hashlib.sha256(version).digest()).digest()[:4]
    return base58.b58encode(version + checksum).decode()


@pytest.mark.parametrize("library", [btcpay.crypto, bitpay.key_utils], ids=["btcpay-python", "bitpay"])
def test_sin_matches_client_libraries(library):
    for _ in range(20):
        pem = library.generate_privkey() if library is btcpay.crypto else library.generate_pem()
        public_key = library.get_compressed_public_key_from_pem(pem)
        sin = identity.sin_from_public_key(public_key)
        assert sin == library.get_sin_from_pem(pem)
        assert identity.is_valid_sin(sin)


@pytest.mark.parametrize("compressed", [True, False], ids=["compressed", "uncompressed"])
def test_sin_of_cryptography_keys(compressed):
    key = ec.generate_private_key(ec.SECP256K1())
    public_key = _public_hex(key, compressed)
    sin = identity.sin_from_public_key(public_key)
    assert sin == _reference_sin(public_key)
    assert sin.startswith("T") and len(sin) == identity.SIN_LENGTH


def test_compressed_and_uncompressed_forms_give_different_sins():
    key = ec.generate_private_key(ec.SECP256K1())
    assert identity.sin_from_public_key(_public_hex(key, True)) != identity.sin_from_public_key(_public_hex(key, False))


def test_ripemd160_fallback_when_openssl_lacks_it(monkeypatch):
    key = ec.generate_private_key(ec.SECP256K1())
    public_key = _public_hex(key, True)
    expected = identity.sin_from_public_key(public_key)
    real_new = hashlib.new
    calls = []

    def new_without_ripemd(name, *args, **kwargs):
        if name.lower() == "ripemd160":
            calls.append(name)
            raise ValueError("unsupported hash type ripemd160")
        return real_new(name, *args, **kwargs)

    monkeypatch.setattr(hashlib, "new", new_without_ripemd)
    assert identity.sin_from_public_key(public_key) == expected
    assert calls, "the hashlib path was not tried first"
    assert identity.ripemd160(b"") == bytes.fromhex("9c1185a5c5e9fc54612808977ee8f548b2258d31")


@pytest.mark.parametrize(
    "sin",
    [
        None,
        "",
        "T" * 35,
        "Tf3wXWuwfT1TmenHF21P1nYZ7BeyrYNdiw",  # too short
        base58.b58encode_check(b"\x0f\x01" + bytes(20)).decode(),  # wrong type byte
        base58.b58encode_check(b"\x00" + bytes(20)).decode(),  # a bitcoin address
        12345,
    ],
)
def test_invalid_sins(sin):
    assert not identity.is_valid_sin(sin)


def test_ecdsa_signatures_including_high_s():
    """A few hundred python-ecdsa signatures: about half are high-S, and all must verify."""
    signing_key = ecdsa.SigningKey.generate(curve=ecdsa.SECP256k1)
    public_key = identity.parse_public_key(signing_key.get_verifying_key().to_string("compressed").hex())
    high_s = 0
    for n in range(300):
        message = f"https://pay.example.com/invoices?token=t{n}".encode()
        signature = signing_key.sign(message, hashfunc=hashlib.sha256, sigencode=sigencode_der)
        _, s = sigdecode_der(signature, CURVE_ORDER)
        high_s += s > CURVE_ORDER // 2
        assert identity.verify_signature(public_key, message, signature.hex())
        assert not identity.verify_signature(public_key, message + b"x", signature.hex())
    assert 90 < high_s < 210


def test_cryptography_signatures_with_uncompressed_key():
    key = ec.generate_private_key(ec.SECP256K1())
    public_key = identity.parse_public_key(_public_hex(key, compressed=False))
    for n in range(50):
        message = f"http://127.0.0.1:8000/tokens{n}".encode()
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
        assert identity.verify_signature(public_key, message, signature.hex())


def test_signature_by_another_key_fails():
    signer = ecdsa.SigningKey.generate(curve=ecdsa.SECP256k1)
    other = ecdsa.SigningKey.generate(curve=ecdsa.SECP256k1)
    signature = signer.sign(b"m", hashfunc=hashlib.sha256, sigencode=sigencode_der).hex()
    other_key = identity.parse_public_key(other.get_verifying_key().to_string("compressed").hex())
    assert not identity.verify_signature(other_key, b"m", signature)


@pytest.mark.parametrize(
    "signature",
    ["", "zz", "30", "3006020101020101" + "00", "00" * 80, "30440220" + "ff" * 32, "not hex at all"],
)
def test_malformed_signatures_are_rejected_cleanly(signature):
    key = ecdsa.SigningKey.generate(curve=ecdsa.SECP256k1)
    public_key = identity.parse_public_key(key.get_verifying_key().to_string("compressed").hex())
    assert identity.verify_signature(public_key, b"message", signature) is False


@pytest.mark.parametrize(
    "public_key",
    ["", "02", "zz" * 33, "02" + "00" * 32, "05" + "11" * 32, "04" + "11" * 64, "02" + "ff" * 32],
)
def test_malformed_public_keys_are_rejected_cleanly(public_key):
    with pytest.raises(identity.InvalidKey):
        identity.parse_public_key(public_key)
    with pytest.raises(identity.InvalidKey):
        identity.sin_from_public_key(public_key)
