import dataclasses
import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.errors import BadRequest, ServiceUnavailable
from chalicelib.payments import rates
from chalicelib.payments.rates import FixedSource, RateService, get_rates, reset_rates
from chalicelib.settings import get_settings

FIXED = {"USD": Decimal(65000), "EUR": Decimal(60000), "GBP": Decimal(52000), "JPY": Decimal(9750000)}

KRAKEN_BODY = {
    "error": [],
    "result": {
        "XXBTZUSD": {"a": ["65001.0", "1", "1.000"], "c": ["65000.10000", "0.001"], "v": ["1", "2"]},
        "XXBTZEUR": {"c": ["60000.50000", "0.010"]},
        "XXBTZGBP": {"c": ["52000.00000", "0.020"]},
        "XXBTZJPY": {"c": ["9750000", "0.1"]},
        "XXBTZCAD": {"c": ["89000.0", "0.1"]},
        "XBTCHF": {"c": ["57000.0", "0.1"]},
        "XBTAUD": {"c": ["99000.0", "0.1"]},
    },
}

COINBASE_BODY = {
    "data": {
        "currency": "BTC",
        "rates": {
            "USD": "64990.12",
            "EUR": "59990.5",
            "GBP": "51990",
            "JPY": "9740000",
            "CAD": "88990",
            "CHF": "56990",
            "AUD": "98990",
            "INR": "5400000",
            "ETH": "20.5",
            "DOGE": "400000",
            "BTC": "1",
        },
    }
}


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Exchange:
    """What the fake exchange answers, switchable per test."""

    def __init__(self):
        self.kraken = "ok"
        self.coinbase = "ok"
        self.hits = {"kraken": 0, "coinbase": 0}
        self.queries = []
        self.release = threading.Event()


class Handler(BaseHTTPRequestHandler):
    exchange: Exchange

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/0/public/Ticker":
            name, body = "kraken", KRAKEN_BODY
        elif url.path == "/v2/exchange-rates":
            name, body = "coinbase", COINBASE_BODY
        else:
            self.send_error(404)
            return
        exchange = self.exchange
        exchange.hits[name] += 1
        exchange.queries.append(parse_qs(url.query))
        mode = getattr(exchange, name)
        status, payload = 200, json.dumps(body).encode()
        if mode == "500":
            status, payload = 500, b'{"error": "boom"}'
        elif mode == "garbage":
            payload = b"<html>not json"
        elif mode == "error_list":
            payload = json.dumps({"error": ["EService:Unavailable"], "result": {}}).encode()
        elif mode == "missing":
            payload = json.dumps({"error": [], "result": {"XXBTZUSD": {"a": ["1"]}}, "data": {}}).encode()
        elif mode == "slow":
            exchange.release.wait(2)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


class QuietServer(ThreadingHTTPServer):
    # Slow handlers write after the client has given up; the broken pipe is expected.
    def handle_error(self, request, client_address):
        pass


@pytest.fixture
def exchange():
    state = Exchange()
    handler = type("BoundHandler", (Handler,), {"exchange": state})
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def clock():
    return FakeClock()


def settings(**overrides):
    base = {"rate_source": "fixed", "fixed_rates": FIXED, "rate_max_age_seconds": 300, "rate_timeout_seconds": 2.0}
    return dataclasses.replace(get_settings(), **{**base, **overrides})


def live_service(exchange, clock, source="kraken", **overrides):
    config = settings(rate_source=source, kraken_url=exchange.url, coinbase_url=exchange.url + "/", **overrides)
    return RateService.from_settings(config, clock=clock)


# Fixed source


def test_fixed_btc_prices():
    service = RateService.from_settings(settings())
    assert service.btc_price("USD") == Decimal(65000)
    assert service.btc_price("EUR") == Decimal(60000)
    assert service.btc_price("BTC") == 1
    assert isinstance(service.btc_price("USD"), Decimal)


def test_fixed_cross_rates():
    service = RateService.from_settings(settings())
    assert service.rate("USD", "EUR") == Decimal(60000) / Decimal(65000)
    assert service.rate("EUR", "USD") == Decimal(65000) / Decimal(60000)
    assert service.rate("BTC", "USD") == Decimal(65000)
    assert service.rate("USD", "BTC") == Decimal(1) / Decimal(65000)
    assert service.rate("BTC", "BTC") == 1
    assert service.rate("EUR", "EUR") == 1


def test_currency_codes_are_case_insensitive():
    service = RateService.from_settings(settings())
    assert service.btc_price("usd") == Decimal(65000)
    assert service.is_known("eur")


def test_rate_list_shape():
    items = RateService.from_settings(settings()).rate_list()
    assert [item["code"] for item in items] == ["BTC", "EUR", "GBP", "JPY", "USD"]
    for item in items:
        assert set(item) == {"code", "name", "rate"}
        assert isinstance(item["rate"], float)
    by_code = {item["code"]: item for item in items}
    assert by_code["BTC"] == {"code": "BTC", "name": "Bitcoin", "rate": 1}
    assert by_code["USD"] == {"code": "USD", "name": "US Dollar", "rate": 65000.0}
    # Must survive the API layer's json.dumps as plain numbers.
    assert json.loads(json.dumps({"data": items}))["data"] == items


def test_rate_list_in_other_base():
    by_code = {item["code"]: item["rate"] for item in RateService.from_settings(settings()).rate_list("USD")}
    assert by_code["USD"] == 1
    assert by_code["BTC"] == pytest.approx(1 / 65000)
    assert by_code["EUR"] == pytest.approx(60000 / 65000)


def test_unknown_currency_name_falls_back_to_code():
    service = RateService.from_settings(settings(fixed_rates={**FIXED, "XAU": Decimal(25)}))
    assert {"code": "XAU", "name": "XAU", "rate": 25.0} in service.rate_list()


def test_unknown_currency_is_bad_request():
    service = RateService.from_settings(settings())
    with pytest.raises(BadRequest, match="Currency XYZ is not supported"):
        service.btc_price("XYZ")
    with pytest.raises(BadRequest):
        service.rate("USD", "XYZ")
    with pytest.raises(BadRequest):
        service.rate("XYZ", "USD")
    with pytest.raises(BadRequest):
        service.rate_list("XYZ")
    with pytest.raises(BadRequest):
        service.btc_price(None)
    assert not service.is_known("XYZ")
    assert service.is_known("BTC")
    assert service.currencies() == ["BTC", "EUR", "GBP", "JPY", "USD"]


def test_fixed_source_rejects_bad_config():
    with pytest.raises(ValueError):
        FixedSource({"USD": Decimal(0)})
    with pytest.raises(ValueError):
        RateService.from_settings(settings(rate_source="bogus"))


def test_get_rates_is_shared_until_reset(monkeypatch):
    monkeypatch.setattr(rates, "get_settings", settings)
    reset_rates()
    try:
        first = get_rates()
        assert get_rates() is first
        assert first.btc_price("USD") == Decimal(65000)
        reset_rates()
        assert get_rates() is not first
    finally:
        reset_rates()


# Live sources against a local fake exchange


def test_kraken_parse(exchange, clock):
    service = live_service(exchange, clock)
    assert service.btc_price("USD") == Decimal("65000.10000")
    assert service.btc_price("EUR") == Decimal("60000.50000")
    assert service.btc_price("CHF") == Decimal("57000.0")
    assert service.currencies() == ["AUD", "BTC", "CAD", "CHF", "EUR", "GBP", "JPY", "USD"]
    assert exchange.hits == {"kraken": 1, "coinbase": 0}
    assert exchange.queries[0]["pair"] == ["XBTUSD,XBTEUR,XBTGBP,XBTJPY,XBTCAD,XBTCHF,XBTAUD"]


@pytest.mark.parametrize("failure", ["500", "garbage", "error_list", "missing", "slow"])
def test_kraken_failure_falls_back_to_coinbase(exchange, clock, failure):
    exchange.kraken = failure
    service = live_service(exchange, clock, rate_timeout_seconds=0.2)
    assert service.btc_price("USD") == Decimal("64990.12")
    assert exchange.hits == {"kraken": 1, "coinbase": 1}
    # As Kraken's fallback, Coinbase offers Kraken's currencies only.
    assert service.currencies() == ["AUD", "BTC", "CAD", "CHF", "EUR", "GBP", "JPY", "USD"]


def test_kraken_is_tried_again_after_fallback(exchange, clock):
    exchange.kraken = "500"
    service = live_service(exchange, clock)
    assert service.btc_price("USD") == Decimal("64990.12")
    exchange.kraken = "ok"
    clock.now += 31
    assert service.btc_price("USD") == Decimal("65000.10000")


def test_coinbase_source_keeps_named_fiat_only(exchange, clock):
    service = live_service(exchange, clock, source="coinbase")
    assert service.btc_price("INR") == Decimal(5400000)
    assert service.btc_price("BTC") == 1
    assert not service.is_known("ETH")
    assert not service.is_known("DOGE")
    assert {"code": "INR", "name": "Indian Rupee", "rate": 5400000.0} in service.rate_list()
    assert exchange.hits == {"kraken": 0, "coinbase": 1}


def test_cache_avoids_second_request_while_fresh(exchange, clock):
    service = live_service(exchange, clock)
    service.btc_price("USD")
    clock.now += 29
    service.rate("USD", "EUR")
    service.rate_list()
    assert exchange.hits["kraken"] == 1
    clock.now += 2
    service.btc_price("USD")
    assert exchange.hits["kraken"] == 2


def test_all_failing_serves_cache_younger_than_max_age(exchange, clock):
    service = live_service(exchange, clock)
    assert service.btc_price("USD") == Decimal("65000.10000")
    exchange.kraken = exchange.coinbase = "500"
    clock.now += 299
    assert service.btc_price("USD") == Decimal("65000.10000")
    assert exchange.hits == {"kraken": 2, "coinbase": 1}


def test_all_failing_with_cache_past_max_age_is_unavailable(exchange, clock):
    service = live_service(exchange, clock)
    service.btc_price("USD")
    exchange.kraken = "error_list"
    exchange.coinbase = "garbage"
    clock.now += 300
    with pytest.raises(ServiceUnavailable, match="[Ee]xchange rate source is unavailable"):
        service.btc_price("USD")
    with pytest.raises(ServiceUnavailable):
        service.rate_list()


def test_all_failing_without_cache_is_unavailable(exchange, clock):
    exchange.coinbase = "slow"
    service = live_service(exchange, clock, source="coinbase", rate_timeout_seconds=0.2)
    with pytest.raises(ServiceUnavailable):
        service.btc_price("USD")


def test_max_age_below_fresh_window_still_bounds_age(exchange, clock):
    service = live_service(exchange, clock, rate_max_age_seconds=10)
    service.btc_price("USD")
    exchange.kraken = exchange.coinbase = "500"
    clock.now += 10
    with pytest.raises(ServiceUnavailable):
        service.btc_price("USD")
