"""A store's wallet: where each invoice's fresh receive address comes from.

Merchants give an account's extended public key (xpub, or its SLIP-132 ypub/zpub forms) or an
output descriptor. Only public keys are ever accepted, so the service can derive addresses but can
never spend. embit does all key parsing, derivation and address encoding.
"""

import hashlib
import re

import base58
from embit.bip32 import HARDENED_INDEX
from embit.descriptor import Descriptor
from embit.descriptor.arguments import AllowedDerivation, Key, KeyOrigin
from embit.descriptor.checksum import add_checksum, checksum
from embit.networks import NETWORKS

from chalicelib.errors import BadRequest

# Far beyond any real descriptor (a 15-key multisig with origins is ~2.5k); stops pathological input early.
_MAX_TEXT = 10_000

_BASE58 = "1-9A-HJ-NP-Za-km-z"
# xprv, tprv, yprv, zprv, uprv, vprv, Yprv... Looked for before parsing, so that even a malformed
# paste containing one is answered with "never send private keys" rather than a generic "invalid".
_EXTENDED_PRIVATE_KEY = re.compile(rf"(?<![{_BASE58}])[A-Za-z]prv[{_BASE58}]{{100,}}")
# A hardened step in the path after an extended public key (.../0h/*, .../*', .../<0h;1h>/*). The key
# origin [fingerprint/84h/0h/0h] comes before the key, where hardened steps are normal, so it never matches.
_HARDENED_STEP = re.compile(rf"(?<![{_BASE58}])[A-Za-z]pub[{_BASE58}]++[^,)]*?[/<;](?:\d+|\*)['hH]")
_EXTENDED_PUBLIC_KEY = re.compile(rf"(?<![{_BASE58}])[A-Za-z]pub[{_BASE58}]{{100,}}")
# Twelve or more plain words: almost certainly seed words, valid or mistyped, and just as secret.
_RECOVERY_PHRASE = re.compile(r"[A-Za-z]+(?:\s+[A-Za-z]+){11,}")

# A bare SLIP-132 key names its script type; a plain xpub/tpub says nothing, and native segwit
# (BIP84) is what current wallets export. Test networks reuse these names for tpub/upub/vpub.
_BARE_KEY_DESCRIPTORS = {"xpub": "wpkh({})", "zpub": "wpkh({})", "ypub": "sh(wpkh({}))"}

_UNREADABLE = (
    "Could not read this wallet. Paste your wallet's account extended public key (xpub, ypub or zpub; "
    "tpub, upub or vpub on test networks) or an output descriptor such as "
    "wpkh([fingerprint/84h/0h/0h]xpub.../0/*), copied completely."
)
_PRIVATE = (
    "This contains a private key. Never share private keys (xprv, zprv, WIF...): the service only needs "
    "your wallet's extended public key (xpub, ypub or zpub) or a descriptor made of public keys only."
)
_SEED_WORDS = (
    "This looks like a recovery phrase (seed words). Never share it with anyone: the service only needs "
    "your wallet's extended public key (xpub, ypub or zpub) or output descriptor, found in the wallet's settings."
)
_HARDENED = (
    "Hardened derivation steps after the key (like /0h or /*h) cannot be derived from a public key. "
    "Give the account's extended public key followed by /0/* (or by no path at all)."
)
_FIXED_KEY = (
    "A single public key gives only one address, but every invoice needs a fresh one. "
    "Give the account's extended public key (xpub, ypub or zpub) instead."
)
_NO_WILDCARD = (
    "The key's derivation path must end in /* (for example /0/*), or be left out: a fixed path names "
    "a single address, but every invoice needs a fresh one."
)
_UNKNOWN_VERSION = "This extended key is not for Bitcoin (unknown version prefix). Give an xpub, ypub or zpub."
_BARE_MULTISIG = "This is a multisig key (Ypub/Zpub): give the wallet's full multisig output descriptor instead."
_BAD_KEY_CHECKSUM = (
    "The extended public key's checksum does not match: a character was mistyped, changed or lost in copying. "
    "Copy the key from your wallet again."
)
_BAD_CHECKSUM = (
    "The descriptor's checksum (the part after '#') does not match, so it was altered or mistyped. "
    "Copy the descriptor from your wallet again."
)


# Bitcoin Core's dust limits (policy.cpp GetDustThreshold at the default 3 sat/vB dust relay fee): an
# output worth less to the address's script type is not relayed, so no buyer could pay it.
DUST_LIMITS = {"p2pkh": 546, "p2sh": 540, "p2wpkh": 294, "p2wsh": 330, "p2tr": 330}


class Wallet:
    """Derives a store's receive addresses from its public keys. Build one with `Wallet.parse`."""

    def __init__(self, descriptor: Descriptor, network: str):
        self._network = NETWORKS[network]
        self._text = add_checksum(descriptor.to_string())
        self._receive = _receive_branch(descriptor)

    @classmethod
    def parse(cls, text: str, network: str = "main") -> "Wallet":
        if network not in NETWORKS:
            # The network comes from deployment settings, not from the merchant: a server fault, not a 400.
            raise ValueError(f"unknown bitcoin network {network!r}; expected one of {', '.join(NETWORKS)}")
        text = text.strip() if isinstance(text, str) else ""
        if not text:
            raise BadRequest("No wallet given: paste your wallet's extended public key (xpub) or output descriptor.")
        if len(text) > _MAX_TEXT:
            raise BadRequest(_UNREADABLE)
        if _EXTENDED_PRIVATE_KEY.search(text):
            raise BadRequest(_PRIVATE)
        if _RECOVERY_PHRASE.fullmatch(text):
            raise BadRequest(_SEED_WORDS)
        if any(not _checksum_matches(key) for key in _EXTENDED_PUBLIC_KEY.findall(text)):
            raise BadRequest(_BAD_KEY_CHECKSUM)
        try:
            descriptor = _read_descriptor(text)
            _check_keys(descriptor, network)
            return cls(descriptor, network)
        except BadRequest:
            raise
        except Exception as exc:
            # embit reports bad input as ValueError, AssertionError, binascii.Error or its own errors;
            # its messages may echo pasted text, so the merchant gets ours instead.
            raise BadRequest(_UNREADABLE) from exc

    def address(self, index: int) -> str:
        """The receive address at `index` (the .../0/index path of a BIP44-style account)."""
        _check_index(index)
        return self._receive.derive(index).address(self._network)

    def addresses(self, start: int, count: int) -> list[str]:
        _check_index(start)
        if not _is_int(count) or count < 0 or start + count > HARDENED_INDEX:
            raise BadRequest(f"count must be a whole number from 0 to {HARDENED_INDEX - start}.")
        return [self.address(i) for i in range(start, start + count)]

    @property
    def dust_limit(self) -> int:
        """The smallest payment, in satoshis, that Bitcoin relays to this wallet's addresses."""
        return DUST_LIMITS[self._receive.derive(0).script_pubkey().script_type()]

    @property
    def identity(self) -> str:
        """What makes two wallets the same: the keys every receive address is derived from.

        Origins and SLIP-132 prefixes are the merchant's to write and change; a key written as an
        account xpub with /0/* and the same key's /0 child with /* derive the very same addresses,
        so the identity is each key's public point and chain code at its last fixed step.
        """
        keys = sorted(key.key.key.sec().hex() + key.key.chain_code.hex() for key in self._receive.keys)
        return hashlib.sha256(",".join(keys).encode()).hexdigest()

    def __str__(self) -> str:
        return self._text


def _checksum_matches(key: str) -> bool:
    """Whether an extended key's last 4 bytes are its base58check checksum (embit says only "invalid")."""
    try:
        base58.b58decode_check(key)
    except ValueError:
        return False
    return True


def _read_descriptor(text: str) -> Descriptor:
    body, has_checksum, given = text.partition("#")
    # embit skips anything after '#' without checking it, so the checksum is verified here.
    if has_checksum and checksum(body) != given:
        raise BadRequest(_BAD_CHECKSUM)
    if _HARDENED_STEP.search(body):
        raise BadRequest(_HARDENED)
    if "(" not in body:
        body = _bare_key_descriptor(body)
    return Descriptor.from_string(body)


def _bare_key_descriptor(text: str) -> str:
    key = Key.from_string(text)
    if key.is_private:
        raise BadRequest(_PRIVATE)
    if not key.is_extended:
        raise BadRequest(_FIXED_KEY)
    _, name = _key_version(key)
    if name not in _BARE_KEY_DESCRIPTORS:
        raise BadRequest(_BARE_MULTISIG)
    return _BARE_KEY_DESCRIPTORS[name].format(text)


def _check_keys(descriptor: Descriptor, network: str) -> None:
    """Rejects keys the service must not or cannot use, and normalises the rest in place."""
    for key in descriptor.keys:
        if key.is_private:
            raise BadRequest(_PRIVATE)
        if not key.is_extended:
            raise BadRequest(_FIXED_KEY)
        key_network, _ = _key_version(key)
        _check_network(key_network, network)
        # Stored descriptors carry plain xpub/tpub, as Bitcoin Core writes them: the script type is
        # spelled out by the descriptor itself, and SLIP-132 prefixes would only confuse other tools.
        key.key.version = NETWORKS[key_network]["xpub"]
        if key.allowed_derivation is None:
            key.allowed_derivation = AllowedDerivation([0, None])
        elif not key.is_wildcard:
            raise BadRequest(_NO_WILDCARD)


def _key_version(key: Key) -> tuple[str, str]:
    """("main" or "test", SLIP-132 name such as "zpub") for an extended public key."""
    # Testnet, signet and regtest share version bytes, so "test" stands for all three.
    for network in ("main", "test"):
        for name, version in NETWORKS[network].items():
            if version == key.key.version and name.endswith("pub"):
                return network, name
    raise BadRequest(_UNKNOWN_VERSION)


def _check_network(key_network: str, network: str) -> None:
    if key_network == "main" and network != "main":
        service = NETWORKS[network]["name"].lower()
        raise BadRequest(
            f"This wallet is for mainnet (xpub/ypub/zpub) but the service runs on {service}: "
            f"give a {service} wallet key (tpub/upub/vpub)."
        )
    if key_network != "main" and network == "main":
        raise BadRequest(
            "This wallet is for testnet, signet or regtest (tpub/upub/vpub) but the service runs on mainnet: "
            "give a mainnet wallet key (xpub/ypub/zpub)."
        )


def _receive_branch(descriptor: Descriptor) -> Descriptor:
    """The receive half of `descriptor`, each key already derived down to its wildcard step.

    An address is then one child derivation per key rather than the whole path again.
    """
    # embit takes the first branch for None as for 0: that mutant is equivalent.
    receive = descriptor.branch(0)  # pragma: no mutate
    for key in receive.keys:
        steps = key.allowed_derivation.indexes
        fixed = steps[: steps.index(None)]
        # Giving every key an origin also spares embit, which otherwise derives an extra child per
        # address just to fill in an origin fingerprint.
        key.origin = KeyOrigin(key.fingerprint, key.derivation + fixed)  # pragma: no mutate (equivalent: only slower)
        key.key = key.key.derive(fixed)
        key.allowed_derivation = AllowedDerivation(steps[len(fixed) :])
    return receive


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_index(index) -> None:
    if not _is_int(index) or not 0 <= index < HARDENED_INDEX:
        raise BadRequest(f"Address index must be a whole number from 0 to {HARDENED_INDEX - 1}.")
