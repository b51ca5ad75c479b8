"""A client for the Esplora HTTP API (mempool.space, blockstream.info, electrs): just what watching needs.

Public instances rate-limit hard, so every request goes through one semaphore
(bounded concurrency however many threads call), the requests' starts can be paced
to a rate (this client's share of the server's limit), and a 429 or 5xx answer is
retried with exponential back-off, honouring Retry-After when the server sends one.
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import urllib3  # botocore's own HTTP library: in every Lambda runtime

from chalicelib.payments.rules import Payment

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
# Esplora pages confirmed history 25 transactions at a time.
CHAIN_PAGE_SIZE = 25
MAX_CHAIN_PAGES = 20
MAX_RETRY_AFTER_SECONDS = 30.0
_HEADERS = {"Accept": "application/json", "User-Agent": "paylambda"}


class EsploraError(Exception):
    """The API could not answer (after retries); nothing should be concluded from it."""


class EsploraClient:
    def __init__(
        self,
        base_url: str,
        *,
        concurrency: int = 4,
        requests_per_second: float | None = None,
        timeout: float = 10.0,
        retries: int = 4,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self._slots = threading.BoundedSemaphore(concurrency)
        # Starts spaced this far apart: more requests in flight than the rate needs then cost no 429s.
        self._spacing = 1 / requests_per_second if requests_per_second else 0.0
        self._pace_lock = threading.Lock()
        self._next_start = 0.0
        # Redirects are not followed (an Esplora API does not redirect) and retries are this client's own.
        self._pool = urllib3.PoolManager(
            maxsize=concurrency, retries=False, timeout=urllib3.Timeout(connect=timeout, read=timeout)
        )
        self._retries = retries
        self._backoff = backoff_seconds
        self._sleep = sleep

    def tip_height(self) -> int:
        text = self._get("/blocks/tip/height").strip()
        if not text.isdigit():
            raise EsploraError(f"unexpected tip height {text[:40]!r}")
        return int(text)

    def address_transactions(self, address: str) -> list[dict]:
        """Every transaction touching `address`: the mempool ones and all confirmed pages."""
        path = f"/address/{quote(address, safe='')}/txs"
        transactions = self._get_json_list(path)
        confirmed = [tx for tx in transactions if tx.get("status", {}).get("confirmed")]
        for _ in range(MAX_CHAIN_PAGES):
            if len(confirmed) < CHAIN_PAGE_SIZE:
                break
            confirmed = self._get_json_list(f"{path}/chain/{quote(confirmed[-1]['txid'], safe='')}")
            transactions.extend(confirmed)
        return transactions

    def _get_json_list(self, path: str) -> list[dict]:
        try:
            parsed = json.loads(self._get(path))
        except ValueError as exc:
            raise EsploraError(f"{path}: the answer is not JSON") from exc
        if not isinstance(parsed, list) or not all(isinstance(item, dict) for item in parsed):
            raise EsploraError(f"{path}: expected a list of transactions")
        return parsed

    def _get(self, path: str) -> str:
        url = self.base_url + path
        attempt = 0
        while True:
            retry_after = None
            try:
                with self._slots:
                    self._pace()
                    status, headers, body = self._request(url)
                if status == 429 or status >= 500:
                    problem, retry_after = f"HTTP {status}", _seconds(headers.get("Retry-After"))
                elif status != 200:
                    raise EsploraError(f"{path}: HTTP {status}")
                elif len(body) > MAX_RESPONSE_BYTES:
                    raise EsploraError(f"{path}: answer larger than {MAX_RESPONSE_BYTES} bytes")
                else:
                    return body.decode()
            except (urllib3.exceptions.HTTPError, OSError, UnicodeDecodeError) as exc:
                problem = str(exc)
            if attempt == self._retries:
                raise EsploraError(f"{path}: {problem} after {attempt + 1} attempts")
            delay = retry_after if retry_after is not None else self._backoff * 2**attempt
            logger.info("esplora %s: %s, retrying in %.1fs", path, problem, delay)
            self._sleep(delay)
            attempt += 1

    def _request(self, url: str) -> tuple[int, Any, bytes]:
        """One GET on a kept-alive connection (TLS set up once per connection, not per request)."""
        response = self._pool.request("GET", url, headers=_HEADERS, preload_content=False)
        try:
            body = response.read(MAX_RESPONSE_BYTES + 1)
            if len(body) > MAX_RESPONSE_BYTES:
                response.close()  # the rest is never read: the connection cannot be used again
        finally:
            response.release_conn()
        return response.status, response.headers, body

    def _pace(self) -> None:
        if not self._spacing:
            return
        with self._pace_lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self._spacing
        if start > now:
            self._sleep(start - now)


def payments_in(transactions: list[dict], address: str, tip_height: int, now: int) -> list[Payment]:
    """The outputs paying `address` in these transactions (an `address_transactions` answer)."""
    payments = {}
    for tx in transactions:
        try:
            payments.update(_outputs_to(tx, address, tip_height, now))
        except (KeyError, TypeError, ValueError) as exc:
            raise EsploraError(f"malformed transaction in the answer for {address}") from exc
    return list(payments.values())


def _seconds(header: str | None) -> float | None:
    try:
        return min(float(header), MAX_RETRY_AFTER_SECONDS) if header else None
    except ValueError:
        return None  # An HTTP date: the usual back-off will do.


def _outputs_to(tx: dict, address: str, tip_height: int, now: int) -> dict[tuple[str, int], Payment]:
    status = tx.get("status") or {}
    height = status.get("block_height") if status.get("confirmed") else None
    block_time = status.get("block_time") if height is not None else None
    payments = {}
    for vout, output in enumerate(tx["vout"]):
        if output.get("scriptpubkey_address") != address:
            continue
        payment = Payment(
            txid=str(tx["txid"]),
            vout=vout,
            amount=int(output["value"]),
            # The tip may have been read just before the block that holds the transaction.
            confirmations=max(tip_height - int(height) + 1, 1) if height is not None else 0,
            first_seen=now,
            block_height=int(height) if height is not None else None,
            block_time=int(block_time) * 1000 if block_time is not None else None,
        )
        payments[payment.key] = payment
    return payments
