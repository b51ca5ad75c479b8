"""Bitcoin exchange rates for invoices and GET /rates.

Every source answers one question, "what does 1 BTC cost in X", and every
other pair is a cross rate through BTC. The service in front of the sources
owns caching and fallback, so a source only fetches and parses.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Protocol

from chalicelib.billing.currencies import CURRENCIES
from chalicelib.errors import BadRequest, ServiceUnavailable
from chalicelib.settings import Settings, get_settings

log = logging.getLogger(__name__)

BTC = "BTC"

CURRENCY_NAMES: dict[str, str] = {code: currency.name for code, currency in CURRENCIES.items()}

# Coinbase also quotes hundreds of crypto assets and some odd codes; only
# currencies we can name are offered to merchants.
FIAT_CODES = frozenset(CURRENCY_NAMES) - {BTC}

# Kraken rejects the whole Ticker request if any pair in it is unknown, so
# ask only for pairs it lists.
KRAKEN_CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CAD", "CHF", "AUD")

FRESH_SECONDS = 30.0

# The real responses are a few kB; the cap keeps a misbehaving endpoint from
# eating the Lambda's memory.
_MAX_BODY_BYTES = 1 << 20


def currency_name(code: str) -> str:
    return CURRENCY_NAMES.get(code, code)


class RateSourceError(Exception):
    """A source could not produce rates right now; the service falls back."""


class RateSource(Protocol):
    name: str

    def fetch(self) -> dict[str, Decimal]:
        """Price of 1 BTC per currency code (BTC itself not required)."""


def _price(value: object, where: str) -> Decimal:
    # bool is an int; a `true` in a price field is a broken response, not 1.
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise RateSourceError(f"{where}: price is not a number: {value!r}")
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise RateSourceError(f"{where}: price is not a number: {value!r}") from None
    if not price.is_finite() or price <= 0:
        raise RateSourceError(f"{where}: price is not positive: {value!r}")
    return price


def _get_json(url: str, timeout: float) -> object:
    # Imported here: urllib.request drags in ssl and email, which a "fixed"
    # deployment never needs and would pay for on every cold start.
    import http.client
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "paylambda"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 200:
                raise RateSourceError(f"HTTP {response.status} from {url}")
            body = response.read(_MAX_BODY_BYTES + 1)
    # OSError covers URLError, HTTPError (4xx/5xx) and timeouts; ValueError a malformed URL.
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise RateSourceError(f"GET {url} failed: {exc!r}") from exc
    if len(body) > _MAX_BODY_BYTES:
        raise RateSourceError(f"response from {url} is too large")
    try:
        # parse_float keeps any JSON-number prices exact.
        return json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise RateSourceError(f"bad JSON from {url}: {exc}") from exc


class FixedSource:
    name = "fixed"

    def __init__(self, rates: dict[str, Decimal]):
        try:
            self._rates = {code.upper(): _price(rate, f"fixed rate {code}") for code, rate in rates.items()}
        except RateSourceError as exc:
            # A bad FIXED_RATES is a deployment mistake; say so instead of serving nonsense.
            raise ValueError(str(exc)) from None

    def fetch(self) -> dict[str, Decimal]:
        return dict(self._rates)


def _kraken_code(pair: str) -> str | None:
    # Kraken answers XBTUSD with its legacy name XXBTZUSD for old fiat pairs,
    # but newer ones (XBTCHF, XBTAUD) keep the name that was asked for.
    if pair.startswith("XXBTZ") and len(pair) == 8:
        return pair[5:]
    if pair.startswith("XBT") and len(pair) == 6:
        return pair[3:]
    return None


class KrakenSource:
    name = "kraken"

    def __init__(self, base_url: str, timeout: float, currencies: tuple[str, ...] = KRAKEN_CURRENCIES):
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._currencies = tuple(currencies)

    def fetch(self) -> dict[str, Decimal]:
        pairs = ",".join(f"XBT{code}" for code in self._currencies)
        payload = _get_json(f"{self._base_url}/0/public/Ticker?pair={pairs}", self._timeout)
        if not isinstance(payload, dict):
            raise RateSourceError("Kraken: response is not an object")
        if payload.get("error"):
            raise RateSourceError(f"Kraken: {payload['error']!r}")
        result = payload.get("result")
        if not isinstance(result, dict):
            raise RateSourceError("Kraken: no result")
        prices = {}
        for pair, ticker in result.items():
            code = _kraken_code(pair)
            if code not in self._currencies:
                continue
            try:
                last = ticker["c"][0]
            except (TypeError, KeyError, IndexError):
                raise RateSourceError(f"Kraken {pair}: no last trade price") from None
            prices[code] = _price(last, f"Kraken {pair}")
        if not prices:
            raise RateSourceError("Kraken: no known pairs in result")
        return prices


class CoinbaseSource:
    name = "coinbase"

    def __init__(self, base_url: str, timeout: float, currencies: frozenset[str] | tuple[str, ...] = FIAT_CODES):
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._currencies = frozenset(currencies)

    def fetch(self) -> dict[str, Decimal]:
        payload = _get_json(f"{self._base_url}/v2/exchange-rates?currency=BTC", self._timeout)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("rates"), dict):
            raise RateSourceError("Coinbase: no data.rates")
        # Rates quoted against anything but BTC would be silently wrong by orders of magnitude.
        if data.get("currency") != BTC:
            raise RateSourceError(f"Coinbase: rates are for {data.get('currency')!r}, not BTC")
        rates = data["rates"]
        prices = {code: _price(rates[code], f"Coinbase {code}") for code in sorted(self._currencies) if code in rates}
        if not prices:
            raise RateSourceError("Coinbase: no known currencies in rates")
        return prices


# Coinbase and Kraken quote the same market: a gap wider than this means one of them is broken.
MAX_DISAGREEMENT = Decimal("0.03")


class CheckedSource:
    """A wide source checked against a second one on the currencies both quote; the second alone when the
    first fails.

    When they disagree neither is trusted: the refresh fails, and the service serves its last
    rates while they are young enough, then refuses to price invoices rather than price them wrong.
    """

    def __init__(self, primary: RateSource, check: RateSource, max_disagreement: Decimal = MAX_DISAGREEMENT):
        self.name = f"{primary.name} checked by {check.name}"
        self._primary, self._check = primary, check
        self._max_disagreement = max_disagreement

    def fetch(self) -> dict[str, Decimal]:
        try:
            prices = self._primary.fetch()
        except RateSourceError as exc:
            log.warning("Rate source %s failed, using %s alone: %s", self._primary.name, self._check.name, exc)
            return self._check.fetch()
        try:
            check = self._check.fetch()
        except RateSourceError as exc:
            log.warning("Rate source %s failed; %s rates unchecked: %s", self._check.name, self._primary.name, exc)
            return prices
        for code in sorted(prices.keys() & check.keys()):
            if abs(prices[code] - check[code]) > check[code] * self._max_disagreement:
                raise RateSourceError(
                    f"{self._primary.name} ({prices[code]}) and {self._check.name} ({check[code]}) disagree on {code}"
                )
        return prices


class RateService:
    def __init__(
        self,
        sources: list[RateSource],
        *,
        max_age_seconds: float,
        fresh_seconds: float = FRESH_SECONDS,
        clock: Callable[[], float] = time.time,
    ):
        if not sources:
            raise ValueError("RateService needs at least one source")
        self._sources = list(sources)
        self._max_age = float(max_age_seconds)
        # Rates are never served past max age, so they can't count as fresh past it either.
        self._fresh = min(float(fresh_seconds), self._max_age)
        self._clock = clock
        # Chalice's local server is threaded; one refresh at a time keeps a
        # burst of requests from each hitting the exchange.
        self._lock = threading.Lock()
        self._prices: dict[str, Decimal] | None = None
        self._fetched_at = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Callable[[], float] = time.time) -> RateService:
        timeout = settings.rate_timeout_seconds
        if settings.rate_source == "fixed":
            sources: list[RateSource] = [FixedSource(settings.fixed_rates)]
        elif settings.rate_source == "kraken":
            # The fallback offers Kraken's currencies only, so the set a
            # merchant may invoice in doesn't change while Kraken is down.
            sources = [
                KrakenSource(settings.kraken_url, timeout),
                CoinbaseSource(settings.coinbase_url, timeout, currencies=KRAKEN_CURRENCIES),
            ]
        elif settings.rate_source == "coinbase":
            sources = [CoinbaseSource(settings.coinbase_url, timeout)]
        elif settings.rate_source == "coinbase-kraken":
            sources = [
                CheckedSource(
                    CoinbaseSource(settings.coinbase_url, timeout), KrakenSource(settings.kraken_url, timeout)
                )
            ]
        else:
            raise ValueError(f"Unknown RATE_SOURCE {settings.rate_source!r}")
        return cls(sources, max_age_seconds=settings.rate_max_age_seconds, clock=clock)

    def _snapshot(self) -> dict[str, Decimal]:
        with self._lock:
            started = self._clock()
            if self._prices is not None and started - self._fetched_at < self._fresh:
                return self._prices
            for source in self._sources:
                try:
                    prices = source.fetch()
                except RateSourceError as exc:
                    log.warning("Rate source %s failed: %s", source.name, exc)
                    continue
                prices[BTC] = Decimal(1)
                # Aged from when the request went out, so the age bound errs on the safe side.
                self._prices, self._fetched_at = prices, started
                return prices
            # Timeouts above took real time; age the cache by now, not by when we started.
            if self._prices is not None and self._clock() - self._fetched_at < self._max_age:
                log.warning("All rate sources failed; serving rates from %.0f s ago", started - self._fetched_at)
                return self._prices
            log.warning("All rate sources failed; no rate to serve")
            raise ServiceUnavailable("Exchange rate source is unavailable, try again later")

    @staticmethod
    def _lookup(prices: dict[str, Decimal], currency: str) -> tuple[str, Decimal]:
        code = currency.strip().upper() if isinstance(currency, str) else None
        if code not in prices:
            raise BadRequest(f"Currency {currency} is not supported")
        return code, prices[code]

    def btc_price(self, currency: str) -> Decimal:
        return self._lookup(self._snapshot(), currency)[1]

    def rate(self, base: str, quote: str) -> Decimal:
        prices = self._snapshot()
        base_code, base_price = self._lookup(prices, base)
        quote_code, quote_price = self._lookup(prices, quote)
        if base_code == quote_code:
            return Decimal(1)
        return quote_price / base_price

    def rate_list(self, base: str = BTC) -> list[dict]:
        # One snapshot for the whole list, so a refresh can't land halfway through it.
        prices = self._snapshot()
        _, base_price = self._lookup(prices, base)
        return [
            {"code": code, "name": currency_name(code), "rate": float(prices[code] / base_price)}
            for code in sorted(prices)
        ]

    def is_known(self, currency: str) -> bool:
        try:
            self._lookup(self._snapshot(), currency)
        except BadRequest:
            return False
        return True

    def currencies(self) -> list[str]:
        return sorted(self._snapshot())


_service: RateService | None = None


def get_rates() -> RateService:
    # Module-level so a warm Lambda keeps its cache between invocations.
    global _service
    if _service is None:
        _service = RateService.from_settings(get_settings())
    return _service


def reset_rates() -> None:
    """Forget the shared service (tests, or after settings change)."""
    global _service
    _service = None
