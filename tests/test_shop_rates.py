"""The production rate source: Coinbase's ~35 fiat currencies, checked against Kraken, Kraken alone as fallback.

Both APIs are served by a local HTTP stand-in speaking their real formats.
"""

import dataclasses
import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from chalicelib.errors import ServiceUnavailable
from chalicelib.payments import rates
from chalicelib.payments.rates import FIAT_CODES, KRAKEN_CURRENCIES, RateService
from chalicelib.settings import get_settings

# BTC prices the stand-ins quote: Coinbase every named fiat currency (and crypto assets we ignore).
COINBASE_PRICES = {code: Decimal(50_000 + 1_000 * n) for n, code in enumerate(sorted(FIAT_CODES))}
KRAKEN_PAIRS = {"USD": "XXBTZUSD", "EUR": "XXBTZEUR", "GBP": "XXBTZGBP", "JPY": "XXBTZJPY", "CAD": "XXBTZCAD"}


class Exchanges(ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.coinbase = {code: str(price) for code, price in COINBASE_PRICES.items()} | {"ETH": "20", "BTC": "1"}
        # Kraken a little off Coinbase, as two markets are.
        self.kraken = {code: str(COINBASE_PRICES[code] * Decimal("1.004")) for code in KRAKEN_CURRENCIES}
        self.down: set[str] = set()
        self.hits = {"coinbase": 0, "kraken": 0}

    def ticker(self) -> dict:
        result = {KRAKEN_PAIRS.get(code, "XBT" + code): {"c": [price, "0.1"]} for code, price in self.kraken.items()}
        return {"error": [], "result": result}


class _Handler(BaseHTTPRequestHandler):
    server: Exchanges

    def do_GET(self):
        path = urlsplit(self.path).path
        name = {"/v2/exchange-rates": "coinbase", "/0/public/Ticker": "kraken"}.get(path)
        if name is None or name in self.server.down:
            self.send_error(503 if name else 404)
            return
        self.server.hits[name] += 1
        body = {"data": {"currency": "BTC", "rates": self.server.coinbase}} if name == "coinbase" else None
        payload = json.dumps(body or self.server.ticker()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def exchanges():
    server = Exchanges()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def service(exchanges, clock=None) -> RateService:
    config = dataclasses.replace(
        get_settings(),
        rate_source="coinbase-kraken",
        coinbase_url=exchanges.url,
        kraken_url=exchanges.url,
        rate_timeout_seconds=2.0,
        rate_max_age_seconds=300,
    )
    return RateService.from_settings(config, clock=clock or Clock())


def test_coinbase_gives_every_named_currency_checked_by_kraken(exchanges):
    prices = service(exchanges)

    assert len(FIAT_CODES) >= 35
    assert prices.currencies() == sorted(FIAT_CODES | {"BTC"})
    assert prices.btc_price("PLN") == COINBASE_PRICES["PLN"] and prices.btc_price("USD") == COINBASE_PRICES["USD"]
    assert exchanges.hits == {"coinbase": 1, "kraken": 1}


def test_a_disagreement_prices_nothing_new(exchanges):
    clock = Clock()
    prices = service(exchanges, clock)
    assert prices.btc_price("USD") == COINBASE_PRICES["USD"]
    exchanges.coinbase["EUR"] = str(COINBASE_PRICES["EUR"] * Decimal("1.05"))

    clock.now += 31
    # The last agreed rates while they are young enough, then nothing rather than a wrong price.
    assert prices.btc_price("EUR") == COINBASE_PRICES["EUR"]
    clock.now += 300
    with pytest.raises(ServiceUnavailable):
        prices.btc_price("EUR")


def test_kraken_alone_when_coinbase_is_down(exchanges):
    exchanges.down.add("coinbase")

    prices = service(exchanges)

    assert prices.currencies() == sorted({*KRAKEN_CURRENCIES, "BTC"})
    assert prices.btc_price("USD") == COINBASE_PRICES["USD"] * Decimal("1.004")


def test_coinbase_unchecked_when_kraken_is_down(exchanges):
    exchanges.down.add("kraken")

    assert service(exchanges).btc_price("PLN") == COINBASE_PRICES["PLN"]


def test_production_uses_it():
    config = json.loads((Path(__file__).parent.parent / ".chalice" / "config.json").read_text())

    assert config["stages"]["prod"]["environment_variables"]["RATE_SOURCE"] == "coinbase-kraken"


def test_get_rates_and_currencies_list_them_all_and_a_pln_shop_invoices(api_url, merchant, exchanges, monkeypatch):
    monkeypatch.setattr(rates, "_service", service(exchanges))

    listed = requests.get(api_url + "/rates").json()["data"]
    currencies = requests.get(api_url + "/currencies").json()["data"]
    invoice = merchant.post("/invoices", {"price": "100", "currency": "PLN"})

    assert [item["code"] for item in listed] == [item["code"] for item in currencies] == sorted(FIAT_CODES | {"BTC"})
    assert {"code": "BRL", "name": "Brazilian Real", "rate": float(COINBASE_PRICES["BRL"])} in listed
    assert invoice.status_code == 200, invoice.text
    assert invoice.json()["data"]["rate"] == float(COINBASE_PRICES["PLN"])
