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
from urllib.parse import quote

from chalicelib.payments.rules import Payment

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
# Esplora pages confirmed history 25 transactions at a time.
CHAIN_PAGE_SIZE = 25
MAX_CHAIN_PAGES = 20
MAX_RETRY_AFTER_SECONDS = 30.0


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
        self._timeout = timeout
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

    def payments_to(self, address: str, tip_height: int, now: int) -> list[Payment]:
        """The outputs paying `address`, with confirmations counted against `tip_height`."""
        payments = {}
        for tx in self.address_transactions(address):
            try:
                payments.update(_outputs_to(tx, address, tip_height, now))
            except (KeyError, TypeError, ValueError) as exc:
                raise EsploraError(f"malformed transaction in the answer for {address}") from exc
        return list(payments.values())

    def _get_json_list(self, path: str) -> list[dict]:
        try:
            parsed = json.loads(self._get(path))
        except ValueError as exc:
            raise EsploraError(f"{path}: the answer is not JSON") from exc
        if not isinstance(parsed, list) or not all(isinstance(item, dict) for item in parsed):
            raise EsploraError(f"{path}: expected a list of transactions")
        return parsed

    def _get(self, path: str) -> str:
        from urllib.error import HTTPError, URLError
        from urllib.request import Request, urlopen

        url = self.base_url + path
        request = Request(url, headers={"Accept": "application/json", "User-Agent": "paylambda"})
        attempt = 0
        while True:
            retry_after = None
            try:
                with self._slots:
                    self._pace()
                    with urlopen(request, timeout=self._timeout) as response:
                        body = response.read(MAX_RESPONSE_BYTES + 1)
                if len(body) > MAX_RESPONSE_BYTES:
                    raise EsploraError(f"{path}: answer larger than {MAX_RESPONSE_BYTES} bytes")
                return body.decode()
            except HTTPError as exc:
                if exc.code != 429 and exc.code < 500:
                    raise EsploraError(f"{path}: HTTP {exc.code}") from exc
                problem = f"HTTP {exc.code}"
                retry_after = _seconds(exc.headers.get("Retry-After"))
            except (URLError, OSError, UnicodeDecodeError) as exc:
                problem = str(getattr(exc, "reason", exc))
            if attempt == self._retries:
                raise EsploraError(f"{path}: {problem} after {attempt + 1} attempts")
            delay = retry_after if retry_after is not None else self._backoff * 2**attempt
            logger.info("esplora %s: %s, retrying in %.1fs", path, problem, delay)
            self._sleep(delay)
            attempt += 1

    def _pace(self) -> None:
        if not self._spacing:
            return
        with self._pace_lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self._spacing
        if start > now:
            self._sleep(start - now)


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
