"""bitpay 8.0.3's real Client, with its strict pydantic models, against the API over HTTP.

It cannot share a process with bitpay 2.6.1910 (same package name), so it is installed apart
(`make install` puts it in .venv/bitpay8; this module does it on first use otherwise) and
tests/bitpay8_session.py runs in a child Python with it first on the path.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.security import tokens

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements-bitpay8.txt"
SESSION_SCRIPT = Path(__file__).with_name("bitpay8_session.py")


@pytest.fixture(scope="session")
def bitpay8_path() -> Path:
    """Where bitpay 8 is installed: $BITPAY8_PATH, or .venv/bitpay8."""
    path = Path(os.environ.get("BITPAY8_PATH") or ROOT / ".venv" / "bitpay8")
    pin = next(line for line in REQUIREMENTS.read_text().splitlines() if line.startswith("bitpay=="))
    if not (path / f"bitpay-{pin.removeprefix('bitpay==')}.dist-info").is_dir():
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade"]
        subprocess.run([*pip, "--target", str(path), "-r", str(REQUIREMENTS)], check=True, timeout=600)
    return path


def run_bitpay8(bitpay8_path: Path, arguments: list[str], parse: dict) -> dict:
    completed = subprocess.run(
        [sys.executable, str(SESSION_SCRIPT), *arguments],
        input=json.dumps(parse),
        env={**os.environ, "PYTHONPATH": str(bitpay8_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_bitpay8_client_reads_our_invoices_and_rates(api_url, merchant, store, bitpay8_path, tmp_path):
    pos_token = tokens.claim(tokens.create_pairing_code(store.store_id, "pos").pairing_code, merchant.sin).token
    key_file = tmp_path / "client.pem"
    key_file.write_text(merchant.pem)
    earlier = merchant.post("/invoices", {"price": 2, "currency": "USD", "posData": "secret"}).json()["data"]
    public = merchant.get(f"/invoices/{earlier['id']}", token=False, signed=False).json()["data"]

    report = run_bitpay8(bitpay8_path, [api_url, str(key_file), merchant.token, pos_token], {"public": public})

    created = report["created"]
    assert created["status"] == "new" and created["currency"] == "USD" and created["price"] == 12.5
    assert (created["orderId"], created["itemCode"], created["posData"]) == ("B8-1", "SKU-8", '{"ref": 8}')
    assert created["notificationURL"] == "https://shop.example/ipn"
    assert created["redirectURL"] == "https://shop.example/thanks"
    assert created["buyer"] == {"name": "Ann Lee", "email": "ann@example.com", "postalCode": "62701", "notify": True}
    assert created["transactionSpeed"] == "high" and created["targetConfirmations"] == 0
    assert created["guid"]  # bitpay 8 makes one for every invoice
    assert created["paymentSubtotals"] == created["paymentTotals"] == {"BTC": "19231"}  # Decimal, dumped as text
    assert created["paymentDisplayTotals"] == {"BTC": "0.00019231"}
    assert created["paymentCodes"]["BTC"]["BIP21"].startswith("bitcoin:bc1q")
    assert created["exchangeRates"] == {"BTC": {"USD": 65000.0}}
    assert created["supportedTransactionCurrencies"]["BTC"] == {"enabled": True}
    assert created["expirationTime"] - created["invoiceTime"] == 15 * 60 * 1000
    assert created["exceptionStatus"] is False and created["transactions"] == []

    for name in ("fetched", "by_guid"):
        assert {**report[name], "currentTime": 0} == {**created, "currentTime": 0}, name
    assert [invoice["id"] for invoice in report["searched"]] == [created["id"]]
    assert report["pos_created"]["currency"] == "EUR" and report["pos_created"]["status"] == "new"

    assert {"code": "USD", "name": "US Dollar", "rate": 65000.0} in report["rates"]["rates"]
    assert report["usd_rate"] == {"code": "USD", "name": "US Dollar", "rate": 65000.0}

    parsed_public = report["parsed"]["public"]
    assert parsed_public["id"] == earlier["id"] and parsed_public["status"] == "new"
    assert "posData" not in parsed_public and "buyer" not in parsed_public
