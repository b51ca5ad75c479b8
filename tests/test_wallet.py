"""Wallet parsing and receive-address derivation.

Expected addresses come from published vectors (BIP84, BIP49, BIP86, SLIP-132) or, where none is
published, from embit's *private* derivation of the same mnemonic: an independent path from the
public-key derivation the wallet itself performs.
"""

import contextlib

import pytest
from embit import bip32, bip39, script
from embit.networks import NETWORKS

from chalicelib.errors import BadRequest
from chalicelib.payments.wallet import Wallet

MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
ROOT = bip32.HDKey.from_seed(bip39.mnemonic_to_seed(MNEMONIC))
FINGERPRINT = "73c5da0a"

# BIP84 account 0 (m/84'/0'/0'), the zpub as published in SLIP-132, and the same key as a plain xpub.
ZPUB = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
XPUB84 = (
    "xpub6CatWdiZiodmUeTDp8LT5or8nmbKNcuyvz7WyksVFkKB4RHwCD3XyuvPEbvqAQY3rAPshWcMLoP2fMFMKHPJ4ZeZXYVUhLv1VMrjPC7PW6V"
)
BIP84_RECEIVE = ["bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"]
BIP84_CHANGE_0 = "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"

# BIP49 test vector (testnet, m/49'/1'/0') and the SLIP-132 mainnet ypub (m/49'/0'/0').
UPUB = "upub5EFU65HtV5TeiSHmZZm7FUffBGy8UKeqp7vw43jYbvZPpoVsgU93oac7Wk3u6moKegAEWtGNF8DehrnHtv21XXEMYRUocHqguyjknFHYfgY"
UPUB_RECEIVE_0 = "2Mww8dCYPUpKHofjgcXcBCEGmniw9CoaiD2"
YPUB = "ypub6Ww3ibxVfGzLrAH1PNcjyAWenMTbbAosGNB6VvmSEgytSER9azLDWCxoJwW7Ke7icmizBMXrzBx9979FfaHxHcrArf3zbeJJJUZPf663zsP"
YPUB_RECEIVE_0 = "37VucYSaXLCAsxYyAPfbSi9eh4iEcbShgf"

# SLIP-132 BIP44 account (m/44'/0'/0') and BIP86 account (m/86'/0'/0') with their published addresses.
XPUB44 = (
    "xpub6BosfCnifzxcFwrSzQiqu2DBVTshkCXacvNsWGYJVVhhawA7d4R5WSWGFNbi8Aw6ZRc1brxMyWMzG3DSSSSoekkudhUd9yLb6qx39T9nMdj"
)
XPUB44_RECEIVE_0 = "1LqBGSKuX5yYUonjxT5qGfpUsXKYYWeabA"
XPUB86 = (
    "xpub6BgBgsespWvERF3LHQu6CnqdvfEvtMcQjYrcRzx53QJjSxarj2afYWcLteoGVky7D3UKDP9QyrLprQ3VCECoY49yfdDEHGCtMMj92pReUsQ"
)
BIP86_RECEIVE = [
    "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr",
    "bc1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0was9fqzwh",
]

# BIP84 testnet account (m/84'/1'/0') as vpub and as plain tpub.
VPUB = ROOT.derive("m/84h/1h/0h").to_public().to_base58(NETWORKS["test"]["zpub"])
TPUB84 = ROOT.derive("m/84h/1h/0h").to_public().to_base58(NETWORKS["test"]["xpub"])

# Bitcoin Core's doc/descriptors.md example (with ' for hardened and a checksum).
CORE_DOC_DESCRIPTOR = (
    "pkh([d34db33f/44'/0'/0']xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRj"
    "aDMzQLcgJvLJuZZvRcEL/1/*)#ml40v0wf"
)


def private_address(path: str, scriptpubkey, network: str = "main") -> str:
    return scriptpubkey(ROOT.derive(path).get_public_key()).address(NETWORKS[network])


def wrapped_segwit(pub):
    return script.p2sh(script.p2wpkh(pub))


def rejection(text, network="main") -> str:
    with pytest.raises(BadRequest) as caught:
        Wallet.parse(text, network)
    return caught.value.message


# --- the test inputs themselves match the mnemonic -------------------------------------------------


def test_account_keys_are_those_of_the_mnemonic():
    assert ROOT.my_fingerprint.hex() == FINGERPRINT
    assert ROOT.derive("m/84h/0h/0h").to_public().to_base58(NETWORKS["main"]["zpub"]) == ZPUB
    assert ROOT.derive("m/84h/0h/0h").to_public().to_base58() == XPUB84
    assert ROOT.derive("m/49h/1h/0h").to_public().to_base58(NETWORKS["test"]["ypub"]) == UPUB
    assert ROOT.derive("m/49h/0h/0h").to_public().to_base58(NETWORKS["main"]["ypub"]) == YPUB
    assert ROOT.derive("m/44h/0h/0h").to_public().to_base58() == XPUB44
    assert ROOT.derive("m/86h/0h/0h").to_public().to_base58() == XPUB86


# --- published vectors -----------------------------------------------------------------------------


def test_bip84_zpub_vector():
    wallet = Wallet.parse(ZPUB)
    assert wallet.address(0) == BIP84_RECEIVE[0]
    assert wallet.address(1) == BIP84_RECEIVE[1]


def test_bip84_matches_private_derivation():
    wallet = Wallet.parse(ZPUB)
    for index in (0, 1, 2, 1000, 2**31 - 1):
        assert wallet.address(index) == private_address(f"m/84h/0h/0h/0/{index}", script.p2wpkh)


@pytest.mark.parametrize(
    "text",
    [
        ZPUB,
        XPUB84,
        f"  {XPUB84}\n",
        f"[{FINGERPRINT}/84h/0h/0h]{XPUB84}",
        f"{XPUB84}/0/*",
        f"wpkh({XPUB84})",
        f"wpkh({ZPUB}/0/*)",
        f"wpkh([{FINGERPRINT}/84h/0h/0h]{XPUB84}/0/*)",
        f"wpkh([{FINGERPRINT}/84'/0'/0']{XPUB84}/0/*)",
        f"wpkh([{FINGERPRINT}/84h/0h/0h]{XPUB84}/<0;1>/*)",
        f"wpkh([{FINGERPRINT}/84h/0h/0h]{XPUB84}/{{0,1}}/*)",
        f"wpkh([{FINGERPRINT}/84h/0h/0h]{XPUB84}/<0;1>/*)#qf45pmyh",
    ],
)
def test_every_form_of_the_bip84_account_gives_the_same_addresses(text):
    assert Wallet.parse(text).addresses(0, 2) == BIP84_RECEIVE


def test_multipath_descriptor_uses_receive_branch_not_change():
    assert Wallet.parse(f"wpkh({XPUB84}/<0;1>/*)").address(0) == BIP84_RECEIVE[0]
    # The BIP84 change vector, reachable only by asking for the change branch explicitly.
    assert Wallet.parse(f"wpkh({XPUB84}/1/*)").address(0) == BIP84_CHANGE_0


def test_bip49_upub_vector_on_testnet():
    wallet = Wallet.parse(UPUB, "test")
    assert wallet.address(0) == UPUB_RECEIVE_0
    assert wallet.address(1) == private_address("m/49h/1h/0h/0/1", wrapped_segwit, "test")


def test_bip49_ypub_on_mainnet():
    wallet = Wallet.parse(YPUB)
    assert wallet.address(0) == YPUB_RECEIVE_0
    assert wallet.addresses(0, 3) == [private_address(f"m/49h/0h/0h/0/{i}", wrapped_segwit) for i in range(3)]
    xpub49 = ROOT.derive("m/49h/0h/0h").to_public().to_base58()
    assert Wallet.parse(f"sh(wpkh([{FINGERPRINT}/49h/0h/0h]{xpub49}/0/*))").addresses(0, 3) == wallet.addresses(0, 3)


def test_bip44_pkh_descriptor():
    wallet = Wallet.parse(f"pkh([{FINGERPRINT}/44h/0h/0h]{XPUB44}/0/*)")
    assert wallet.address(0) == XPUB44_RECEIVE_0
    assert wallet.address(7) == private_address("m/44h/0h/0h/0/7", script.p2pkh)


def test_bip86_taproot_descriptor():
    assert Wallet.parse(f"tr([{FINGERPRINT}/86h/0h/0h]{XPUB86}/0/*)").addresses(0, 2) == BIP86_RECEIVE


# --- networks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("network", "prefix"), [("test", "tb1q"), ("signet", "tb1q"), ("regtest", "bcrt1q")])
@pytest.mark.parametrize("text", [VPUB, TPUB84, f"wpkh([{FINGERPRINT}/84h/1h/0h]{TPUB84}/<0;1>/*)"])
def test_test_networks_use_their_own_encoding(text, network, prefix):
    wallet = Wallet.parse(text, network)
    expected = [private_address(f"m/84h/1h/0h/0/{i}", script.p2wpkh, network) for i in range(3)]
    assert wallet.addresses(0, 3) == expected
    assert all(address.startswith(prefix) for address in expected)


@pytest.mark.parametrize("network", ["test", "signet", "regtest"])
@pytest.mark.parametrize("text", [ZPUB, XPUB84, YPUB, f"wpkh({XPUB84}/0/*)"])
def test_mainnet_key_rejected_on_test_networks(text, network):
    message = rejection(text, network)
    assert "mainnet" in message
    assert NETWORKS[network]["name"].lower() in message


@pytest.mark.parametrize("text", [VPUB, TPUB84, UPUB, f"sh(wpkh({UPUB}))"])
def test_test_network_key_rejected_on_mainnet(text):
    message = rejection(text, "main")
    assert "testnet" in message
    assert "runs on mainnet" in message


def test_unknown_network_is_a_configuration_error():
    with pytest.raises(ValueError):
        Wallet.parse(ZPUB, "mainnet")


# --- multisig --------------------------------------------------------------------------------------


def test_sorted_multisig_descriptor():
    paths = ["m/48h/0h/0h/2h", "m/48h/0h/1h/2h"]
    keys = [f"[{FINGERPRINT}/{path[2:]}]{ROOT.derive(path).to_public().to_base58()}/<0;1>/*" for path in paths]
    wallet = Wallet.parse(f"wsh(sortedmulti(2,{','.join(keys)}))")
    for index in (0, 5):
        pubkeys = sorted((ROOT.derive(f"{path}/0/{index}").get_public_key() for path in paths), key=lambda k: k.sec())
        expected = script.p2wsh(script.multisig(2, pubkeys)).address(NETWORKS["main"])
        assert wallet.address(index) == expected
        assert expected.startswith("bc1q") and len(expected) == 62


def test_bare_multisig_slip132_key_asks_for_a_descriptor():
    zpub_multisig = ROOT.derive("m/48h/0h/0h/2h").to_public().to_base58(NETWORKS["main"]["Zpub"])
    assert "descriptor" in rejection(zpub_multisig)


# --- checksums and canonical text ------------------------------------------------------------------


def test_descriptor_checksum_accepted():
    wallet = Wallet.parse(CORE_DOC_DESCRIPTOR)
    assert wallet.address(0).startswith("1")
    assert Wallet.parse(CORE_DOC_DESCRIPTOR.partition("#")[0]).address(0) == wallet.address(0)


@pytest.mark.parametrize(
    "text",
    [
        CORE_DOC_DESCRIPTOR[:-1] + "x",
        CORE_DOC_DESCRIPTOR.replace("/1/*", "/0/*"),
        f"wpkh({XPUB84}/0/*)#",
        f"wpkh({XPUB84}/0/*)#qf45pmyh",
        "#",
    ],
)
def test_descriptor_bad_checksum_rejected(text):
    assert "checksum" in rejection(text)


def _mistyped(key: str) -> str:
    return key[:60] + ("2" if key[60] != "2" else "3") + key[61:]


@pytest.mark.parametrize(
    "text", [_mistyped(ZPUB), _mistyped(XPUB84), ZPUB[:-1], f"wpkh([{FINGERPRINT}/84h/0h/0h]{_mistyped(XPUB84)}/0/*)"]
)
def test_a_mistyped_extended_key_is_told_its_checksum_does_not_match(text):
    assert "extended public key's checksum does not match" in rejection(text)


@pytest.mark.parametrize(
    "text",
    [
        ZPUB,
        YPUB,
        XPUB84,
        f"wpkh([{FINGERPRINT}/84'/0'/0']{ZPUB}/<0;1>/*)",
        CORE_DOC_DESCRIPTOR,
        f"tr({XPUB86})",
        f"wsh(sortedmulti(1,{XPUB84}/0/*,{XPUB44}))",
    ],
)
def test_canonical_text_round_trips(text):
    wallet = Wallet.parse(text)
    again = Wallet.parse(str(wallet))
    assert str(again) == str(wallet)
    assert again.addresses(0, 5) == wallet.addresses(0, 5)
    assert "#" in str(wallet)


def test_canonical_text_is_a_plain_xpub_descriptor():
    assert str(Wallet.parse(ZPUB)) == f"wpkh({XPUB84}/0/*)#kj7aqcx6"
    assert str(Wallet.parse(YPUB)).startswith("sh(wpkh(xpub")
    assert str(Wallet.parse(VPUB, "test")) == str(Wallet.parse(TPUB84, "test"))
    assert str(Wallet.parse(VPUB, "test")).startswith("wpkh(tpub")


# --- rejections ------------------------------------------------------------------------------------

XPRV = ROOT.to_base58()
ZPRV = ROOT.derive("m/84h/0h/0h").to_base58(NETWORKS["main"]["zprv"])
TPRV = ROOT.derive("m/84h/1h/0h").to_base58(NETWORKS["test"]["xprv"])
WIF = "KyZpNDKnfs94vbrwhJneDi77V6jF64PWPF8x5cdJb8ifgg2DUc9d"  # BIP84 receive 0 private key


@pytest.mark.parametrize(
    ("text", "network"),
    [
        (XPRV, "main"),
        (ZPRV, "main"),
        (TPRV, "test"),
        (TPRV, "main"),
        (f"  {ZPRV}  ", "main"),
        (f"wpkh({XPRV}/84h/0h/0h/0/*)", "main"),
        (f"wpkh([{FINGERPRINT}/84h/0h/0h]{ZPRV}/0/*)#aaaaaaaa", "main"),
        (f"wpkh({XPRV}/0h/*h)", "main"),
        (f"wsh(sortedmulti(1,{XPUB84}/0/*,{XPRV}/0/*))", "main"),
        (f"wpkh({WIF})", "main"),
        (WIF, "main"),
        (f"tr({WIF})", "main"),
        (ZPRV[:-3], "main"),
    ],
)
def test_private_keys_rejected_without_echoing_them(text, network):
    message = rejection(text, network)
    assert "private key" in message
    assert XPRV[4:20] not in message and ZPRV[4:20] not in message and WIF[4:20] not in message


@pytest.mark.parametrize(
    "text",
    [
        f"wpkh({XPUB84}/0h/*)",
        f"wpkh({XPUB84}/0/*h)",
        f"wpkh([{FINGERPRINT}/84h/0h/0h]{XPUB84}/0/*')",
        f"{XPUB84}/0H/*",
        f"wpkh({XPUB84}/*h)",
        f"wpkh({XPUB84}/<0h;1h>/*)",
        f"wsh(sortedmulti(1,[{FINGERPRINT}/48h/0h/0h/2h]{XPUB84}/0/*,{XPUB44}/1h/*))",
    ],
)
def test_hardened_derivation_from_public_key_rejected(text):
    assert "Hardened" in rejection(text)


@pytest.mark.parametrize(
    "text",
    [f"wpkh({XPUB84}/0/5)", f"{XPUB84}/0", f"wsh(sortedmulti(1,{XPUB84}/0/*,{XPUB44}/0/1))"],
)
def test_path_without_wildcard_rejected(text):
    assert "must end in /*" in rejection(text)


@pytest.mark.parametrize(
    "text",
    [
        "wpkh(0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c)",
        "0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c",
        f"wsh(sortedmulti(1,{XPUB84}/0/*,0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c))",
    ],
)
def test_single_public_key_rejected(text):
    assert "fresh" in rejection(text)


@pytest.mark.parametrize("text", ["", "   ", "\n\t", None])
def test_empty_rejected(text):
    assert "No wallet" in rejection(text)


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "xpub",
        "xpub123",
        ZPUB + "0",
        f"wpkh({XPUB84}",
        f"wpkh({XPUB84}/0/*)extra",
        f"wpkh({XPUB84} /0/*)",
        f"wpkh({XPUB84}/0/*/*)",
        f"wpkh([zz/84h]{XPUB84})",
        f"wpkh([{FINGERPRINT}/84h/0h/0h{XPUB84}/0/*)",
        "wpkh()",
        "()",
        "addr(bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu)",
        "raw(deadbeef)#89f8spxm",
        "combo(" + XPUB84 + ")",
        BIP84_RECEIVE[0],
        "wpkh(" + "x" * 20_000 + ")",
        "wpkh(\u00e9)",
    ],
)
def test_garbage_rejected(text):
    assert "Could not read" in rejection(text)


@pytest.mark.parametrize("text", [MNEMONIC, MNEMONIC.replace("about", "abut"), " ".join(MNEMONIC.split()[:12] * 2)])
def test_recovery_phrase_rejected(text):
    assert "recovery phrase" in rejection(text)


def test_mangled_descriptors_never_raise_anything_but_bad_request():
    text = f"sh(wpkh([{FINGERPRINT}/49h/0h/0h]{YPUB}/<0;1>/*))#" + "q" * 8
    candidates = [text[:end] for end in range(len(text))]
    candidates += [text[:i] + ch + text[i + 1 :] for i in range(0, len(text), 3) for ch in "()[]/*<>;,#h'0"]
    for candidate in candidates:
        with contextlib.suppress(BadRequest):
            Wallet.parse(candidate)


# --- indexes ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wallet():
    return Wallet.parse(ZPUB)


@pytest.mark.parametrize("index", [-1, 2**31, 2**32, True, 1.0, "1", None])
def test_address_index_out_of_range_rejected(wallet, index):
    with pytest.raises(BadRequest):
        wallet.address(index)


def test_largest_index_accepted(wallet):
    assert wallet.address(2**31 - 1) == private_address(f"m/84h/0h/0h/0/{2**31 - 1}", script.p2wpkh)


def test_addresses_match_address(wallet):
    assert wallet.addresses(5, 4) == [wallet.address(i) for i in range(5, 9)]
    assert wallet.addresses(0, 2) == BIP84_RECEIVE
    assert wallet.addresses(7, 0) == []
    assert wallet.addresses(2**31 - 2, 2) == [wallet.address(2**31 - 2), wallet.address(2**31 - 1)]


@pytest.mark.parametrize(("start", "count"), [(-1, 1), (0, -1), (2**31 - 1, 2), (2**31, 0), (0, 1.5), ("0", 1)])
def test_addresses_bounds_rejected(wallet, start, count):
    with pytest.raises(BadRequest):
        wallet.addresses(start, count)
