"""GET /rates over HTTP, in BitPay's shapes and BTCPay's currencyPairs form (fixed source: USD 65000, EUR 60000)."""

import socket

import pytest

from chalicelib.payments import rates
from chalicelib.payments.rates import CoinbaseSource, RateService
from tests.bitid_client import BitIdClient


@pytest.fixture
def client(api_url) -> BitIdClient:
    return BitIdClient(api_url)


def get(client: BitIdClient, path: str, **params) -> dict:
    response = client.get(path, params, signed=False)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("path", ["/rates", "/rates/", "/rates/BTC", "/rates/BTC/", "/rates/btc"])
def test_rate_list(client, path):
    body = get(client, path)

    assert list(body) == ["data"]
    by_code = {item["code"]: item for item in body["data"]}
    assert by_code["USD"] == {"code": "USD", "name": "US Dollar", "rate": 65000.0}
    assert by_code["EUR"] == {"code": "EUR", "name": "Euro", "rate": 60000.0}
    assert by_code["BTC"] == {"code": "BTC", "name": "Bitcoin", "rate": 1.0}
    assert all(type(item["rate"]) is float for item in body["data"])


def test_rate_list_with_crypto_code_query(client):
    assert get(client, "/rates/", cryptoCode="BTC") == get(client, "/rates")


def test_rate_list_in_another_base(client):
    by_code = {item["code"]: item["rate"] for item in get(client, "/rates/USD")["data"]}

    assert by_code["USD"] == 1.0
    assert by_code["BTC"] == pytest.approx(1 / 65000)
    assert by_code["EUR"] == pytest.approx(60000 / 65000)


@pytest.mark.parametrize("path", ["/rates/BTC/USD", "/rates/BTC/USD/", "/rates/btc/usd"])
def test_one_pair(client, path):
    assert get(client, path) == {"data": {"code": "USD", "name": "US Dollar", "rate": 65000.0}}


def test_one_cross_pair(client):
    assert get(client, "/rates/EUR/USD")["data"]["rate"] == pytest.approx(65000 / 60000)


def test_btcpay_currency_pairs(client):
    body = get(client, "/rates", currencyPairs="BTC_USD,btc_eur", storeID="ignored")

    assert body == {
        "data": [
            {"name": "US Dollar", "cryptoCode": "BTC", "currencyPair": "BTC_USD", "code": "USD", "rate": 65000.0},
            {"name": "Euro", "cryptoCode": "BTC", "currencyPair": "BTC_EUR", "code": "EUR", "rate": 60000.0},
        ]
    }


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/rates/XYZ", {}, "Currency XYZ is not supported"),
        ("/rates/BTC/XYZ", {}, "Currency XYZ is not supported"),
        ("/rates", {"cryptoCode": "XYZ"}, "Currency XYZ is not supported"),
        ("/rates", {"currencyPairs": "BTC_XYZ"}, "Currency XYZ is not supported"),
        ("/rates", {"currencyPairs": "BTCUSD"}, "currencyPairs entries look like BTC_USD, not 'BTCUSD'"),
    ],
)
def test_unknown_currencies_are_bad_requests(client, path, params, message):
    response = client.get(path, params, signed=False)

    assert response.status_code == 400
    assert response.json() == {"error": message}


def test_rates_need_no_token_but_accept_a_signed_request_with_one(client, merchant):
    assert merchant.get("/rates/", {"cryptoCode": "BTC"}).json() == get(client, "/rates")


@pytest.fixture
def failing_rate_source(monkeypatch, merchant):
    """Swapped in once the merchant's store exists (making a store checks its currency)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    # Nothing listens there any more: every fetch is refused at once.
    monkeypatch.setattr(rates, "_service", RateService([CoinbaseSource(url, timeout=1)], max_age_seconds=60))


def test_a_failing_rate_source_is_a_503_with_a_message(client, merchant, failing_rate_source):
    for response in (client.get("/rates", signed=False), merchant.post("/invoices", {"price": 1, "currency": "USD"})):
        assert response.status_code == 503
        assert response.json() == {"error": "Exchange rate source is unavailable, try again later"}
