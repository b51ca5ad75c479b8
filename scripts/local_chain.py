"""The local test chain: a mempool and blocks served over HTTP as an Esplora API, and the controls that change them.

`make run` serves it on regtest (scripts/run_local.py) and the suite runs its payment
tests against it (tests/payments_support.py). It is not part of the Lambda bundle.

- `Chain`: transactions enter the mempool when paid, blocks confirm them; the tests also
  replace transactions, make the server answer 429/503 or hold answers back.
- `EsploraServer`: the chain over HTTP, with the paths and JSON shapes of Blockstream's
  Esplora API (API.md) that the watcher reads, and two controls, loopback only:
  `POST /control/pay` `{"address": ..., "amount": sats}` -> `{"txid": ...}` and
  `POST /control/mine` `{"blocks": n}` -> `{"height": ...}` (the checkout's test-chain buttons).
"""

import hashlib
import json
import os
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Protocol
from urllib.parse import unquote, urlsplit

# `make run`'s network unless BITCOIN_NETWORK names another (make admin --local assumes it too).
NETWORK = "regtest"
# electrs' regtest HTTP port.
DEFAULT_PORT = 3002
# Most blocks one control request mines.
MAX_BLOCKS = 100
MAX_CONTROL_BODY = 10_000


class Clock(Protocol):
    """Milliseconds since the epoch, as `now` (the tests' FakeClock moves by itself only when told)."""

    @property
    def now(self) -> int: ...


class WallClock:
    @property
    def now(self) -> int:
        return int(time.time() * 1000)


class Chain:
    """A mempool and a chain of blocks, just enough for Esplora's address and tip endpoints."""

    START_HEIGHT = 840_000

    def __init__(self, clock: Clock):
        self.clock = clock
        self.lock = threading.Lock()
        self.height = self.START_HEIGHT
        self.block_times = {self.START_HEIGHT: clock.now // 1000}
        self.mempool: dict[str, dict] = {}
        self.confirmed: dict[str, dict] = {}
        self._serial = count()
        # Requests answered with an error status before the real answer: path prefix -> statuses.
        self.failures: dict[str, list[int]] = defaultdict(list)
        self.retry_after: str | None = None
        # Address -> barrier its /txs answers wait on (to make watchers race).
        self.barriers: dict[str, threading.Barrier] = {}
        # The paths asked for, newest last (bounded: `make run` serves for days).
        self.requests: deque[str] = deque(maxlen=100_000)

    def pay(self, address: str, amount: int, *, also: tuple[tuple[str, int], ...] = ()) -> str:
        """A transaction paying `amount` to `address` (and `also` to others), entering the mempool."""
        txid = self._txid()
        outputs = [(address, amount), *also, (_change_address(txid), 54_321)]
        with self.lock:
            self.mempool[txid] = _transaction(txid, outputs)
        return txid

    def replace(self, txid: str, *, pays: tuple[tuple[str, int], ...] = ()) -> str:
        """RBF: `txid` leaves the mempool and a conflicting transaction paying `pays` enters it."""
        with self.lock:
            del self.mempool[txid]
        replacement = self._txid()
        with self.lock:
            self.mempool[replacement] = _transaction(replacement, [*pays, (_change_address(replacement), 50_000)])
        return replacement

    def mine(self, blocks: int = 1, *, only: tuple[str, ...] | None = None) -> None:
        """Mine `blocks` blocks, the first confirming the mempool (or just `only`)."""
        with self.lock:
            for number in range(blocks):
                self.height += 1
                self.block_times[self.height] = self.clock.now // 1000 + number
                if number == 0:
                    for txid in list(self.mempool) if only is None else only:
                        tx = self.mempool.pop(txid)
                        tx["status"] = {
                            "confirmed": True,
                            "block_height": self.height,
                            "block_hash": _block_hash(self.height),
                            "block_time": self.block_times[self.height],
                        }
                        self.confirmed[txid] = tx

    def fail_next(self, path_prefix: str, *statuses: int) -> None:
        self.failures[path_prefix].extend(statuses)

    def hold(self, address: str, parties: int) -> None:
        """Answer nobody about `address` until `parties` requests for it are waiting."""
        self.barriers[address] = threading.Barrier(parties, timeout=10)

    def transactions(self, address: str) -> tuple[list[dict], list[dict]]:
        """(mempool, confirmed) transactions touching `address`, newest first."""
        with self.lock:
            mempool = [tx for tx in self.mempool.values() if _touches(tx, address)]
            confirmed = [tx for tx in self.confirmed.values() if _touches(tx, address)]
        return list(reversed(mempool)), sorted(confirmed, key=lambda tx: -tx["status"]["block_height"])

    def _txid(self) -> str:
        return hashlib.sha256(f"tx-{next(self._serial)}-{id(self)}".encode()).hexdigest()


def _touches(tx: dict, address: str) -> bool:
    return any(output["scriptpubkey_address"] == address for output in tx["vout"])


def _change_address(seed: str) -> str:
    return "bc1qchange" + seed[:20]


def _block_hash(height: int) -> str:
    return hashlib.sha256(f"block-{height}".encode()).hexdigest()


def _transaction(txid: str, outputs: list[tuple[str, int]]) -> dict:
    return {
        "txid": txid,
        "version": 2,
        "locktime": 0,
        "vin": [{"txid": "ab" * 32, "vout": 0, "is_coinbase": False, "sequence": 4294967293}],
        "vout": [
            {
                "scriptpubkey": "0014" + "00" * 20,
                "scriptpubkey_type": "v0_p2wpkh",
                "scriptpubkey_address": a,
                "value": v,
            }
            for a, v in outputs
        ],
        "size": 222,
        "weight": 561,
        "fee": 1410,
        "status": {"confirmed": False},
    }


class _EsploraHandler(BaseHTTPRequestHandler):
    server: "EsploraServer"
    # Connections are kept alive, as public Esplora servers keep them.
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.server.connections += 1

    def do_GET(self):
        chain = self.server.chain
        path = urlsplit(self.path).path
        if not self.server.admit():
            return self._send(429, "Too Many Requests", {"Retry-After": "1"})
        time.sleep(self.server.latency)
        chain.requests.append(path)
        for prefix, statuses in chain.failures.items():
            if path.startswith(prefix) and statuses:
                status = statuses.pop(0)
                headers = {"Retry-After": chain.retry_after} if chain.retry_after else {}
                return self._send(status, "Too Many Requests" if status == 429 else "Server Error", headers)
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if parts == ["blocks", "tip", "height"]:
            return self._send(200, str(chain.height))
        if parts == ["blocks", "tip", "hash"]:
            return self._send(200, _block_hash(chain.height))
        if len(parts) >= 3 and parts[0] == "address" and parts[2] == "txs":
            return self._address_txs(chain, parts[1], parts[3:])
        if len(parts) == 3 and parts[0] == "tx" and parts[2] == "status":
            tx = chain.confirmed.get(parts[1]) or chain.mempool.get(parts[1])
            return self._send(404, "Transaction not found") if tx is None else self._json(tx["status"])
        if len(parts) == 2 and parts[0] == "tx":
            tx = chain.confirmed.get(parts[1]) or chain.mempool.get(parts[1])
            return self._send(404, "Transaction not found") if tx is None else self._json(tx)
        return self._send(404, "Not found")

    def do_POST(self):
        """The controls: pay an address, mine blocks. Bad input is a 400 saying what is wrong."""
        chain = self.server.chain
        declared = self.headers.get("Content-Length", "")
        length = int(declared) if declared.isdigit() else 0
        if not 0 < length <= MAX_CONTROL_BODY:
            # The body is left unread: the connection cannot carry another request.
            self.close_connection = True
            return self._send(400, "Send a JSON body")
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            return self._send(400, "The body is not JSON")
        path = urlsplit(self.path).path
        if path == "/control/pay":
            address, amount = body.get("address"), body.get("amount")
            if not isinstance(address, str) or not 0 < len(address) <= 100:
                return self._send(400, "address: give the address to pay")
            if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= 21 * 10**14:
                return self._send(400, "amount: a whole number of satoshis, more than 0")
            return self._json({"txid": chain.pay(address, amount)})
        if path == "/control/mine":
            blocks = body.get("blocks", 1)
            if isinstance(blocks, bool) or not isinstance(blocks, int) or not 0 < blocks <= MAX_BLOCKS:
                return self._send(400, f"blocks: a whole number from 1 to {MAX_BLOCKS}")
            chain.mine(blocks)
            return self._json({"height": chain.height})
        return self._send(404, "Not found")

    def _address_txs(self, chain: Chain, address: str, rest: list[str]):
        barrier = chain.barriers.get(address)
        if barrier is not None:
            barrier.wait()
        mempool, confirmed = chain.transactions(address)
        if not rest:
            return self._json(mempool[:50] + confirmed[:25])
        if rest == ["mempool"]:
            return self._json(mempool[:50])
        if rest[0] == "chain":
            start = 0
            if len(rest) > 1:
                txids = [tx["txid"] for tx in confirmed]
                if rest[1] not in txids:
                    return self._send(400, "Invalid last_seen_txid")
                start = txids.index(rest[1]) + 1
            return self._json(confirmed[start : start + 25])
        return self._send(404, "Not found")

    def _json(self, body) -> None:
        self._send(200, json.dumps(body), {"Content-Type": "application/json"})

    def _send(self, status: int, text: str, headers: dict | None = None) -> None:
        payload = text.encode()
        self.send_response(status)
        for name, value in {"Content-Type": "text/plain", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        pass


class EsploraServer(ThreadingHTTPServer):
    """The chain over HTTP; like a public server, it may answer after `latency` seconds and refuse (429)
    requests beyond `rate_limit` a second."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, port: int, chain: Chain, latency: float = 0.0, rate_limit: int | None = None):
        # Port 0: any free one, named in `url`.
        super().__init__(("127.0.0.1", port), _EsploraHandler)
        self.chain = chain
        self.latency = latency
        self.rate_limit = rate_limit
        self.refused = 0
        self.connections = 0
        self._admitted: list[float] = []
        self._lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def admit(self) -> bool:
        """Whether a request arriving now is within the rate limit (over any sliding second)."""
        if self.rate_limit is None:
            return True
        now = time.monotonic()
        with self._lock:
            self._admitted = [moment for moment in self._admitted if moment > now - 1]
            if len(self._admitted) >= self.rate_limit:
                self.refused += 1
                return False
            self._admitted.append(now)
            return True


def new_test_wallet() -> str:
    """A fresh regtest wallet's receive descriptor (BIP84); its private key is thrown away (nothing spends here)."""
    from embit.bip32 import HDKey
    from embit.networks import NETWORKS

    root = HDKey.from_seed(os.urandom(32), version=NETWORKS["regtest"]["xprv"])
    account = root.derive("m/84h/1h/0h").to_public()
    return f"wpkh([{root.my_fingerprint.hex()}/84h/1h/0h]{account.to_base58(NETWORKS['regtest']['xpub'])}/0/*)"
