"""Load: thousands of mixed signed requests from several client processes, then every invoice read back.

    PYTHONPATH=. python bench/load.py [--requests 6000] [--clients 4] [--seconds 300]
    PYTHONPATH=. python bench/load.py --url http://127.0.0.1:8000 --pairing-code CODE

Without --url it starts the service as `make run` does (scripts/run_local.py: moto's DynamoDB
and SQS, the tables, `chalice local`, the jobs' threads) on free loopback ports, with the watcher
pointed at a closed loopback port so nothing leaves the machine; makes a store and a merchant
pairing code with the administration CLI, as a merchant would; and claims the code. With --url,
give a merchant pairing code of a store there.

Each client process signs its requests with the merchant's key, as a BitPay client does:
creates (a random price in USD or EUR), reads of invoices it created, searches and rate lists.
Every process stops at its share of --requests or at --seconds, whichever comes first. A first
pass from one process, unloaded, gives the baseline latencies.

Afterwards every invoice whose create was acknowledged (200) is read back: it must exist with the
price, currency, amount due and address the create answered, and no two share an address.
Exit status 1 when a target is missed (any 5xx, an invoice missing or changed, a shared address).
"""

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import requests
from ecdsa import SECP256k1, SigningKey
from ecdsa.util import sigencode_der

from scripts.run_local import copy_tree

ROOT = Path(__file__).resolve().parent.parent
# The BIP84 test vector account ("abandon ... about").
BIP84_ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
)
KINDS = ("create", "get", "search", "rates")
WEIGHTS = (3, 4, 1, 2)
MIN_REQUESTS = 5000
BASELINE_PER_KIND = 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Merchant:
    """A paired merchant client: signs the full URL followed by the body, with its token in the request."""

    def __init__(self, base_url: str, pem: str, token: str):
        self.base_url, self.pem, self.token = base_url, pem, token
        self.key = SigningKey.from_pem(pem)
        self.public_key = self.key.get_verifying_key().to_string("compressed").hex()
        self.session = requests.Session()

    def _headers(self, message: bytes) -> dict:
        signature = self.key.sign(message, hashfunc=hashlib.sha256, sigencode=sigencode_der).hex()
        return {"Content-Type": "application/json", "X-Identity": self.public_key, "X-Signature": signature}

    def get(self, path: str, params: dict | None = None) -> requests.Response:
        url = f"{self.base_url}{path}?{urlencode({**(params or {}), 'token': self.token})}"
        return self.session.get(url, headers=self._headers(url.encode()), timeout=60)

    def post(self, path: str, body: dict) -> requests.Response:
        data = json.dumps({**body, "token": self.token}).encode()
        url = self.base_url + path
        return self.session.post(url, data=data, headers=self._headers(url.encode() + data), timeout=60)


def pair(base_url: str, pairing_code: str) -> tuple[str, str]:
    """Claims a merchant pairing code with a new key: (the key's PEM, the token)."""
    key = SigningKey.generate(curve=SECP256k1)
    from bitpay.key_utils import get_sin_from_pem  # the SIN as a client library computes it

    pem = key.to_pem().decode()
    response = requests.post(
        f"{base_url}/tokens", json={"id": get_sin_from_pem(pem), "pairingCode": pairing_code}, timeout=60
    )
    if response.status_code != 200:
        sys.exit(f"pairing failed: HTTP {response.status_code} {response.text}")
    return pem, response.json()["data"][0]["token"]


def new_invoice(rng: random.Random, serial: str) -> dict:
    price = f"{rng.randint(100, 50_000) / 100:.2f}"
    currency = rng.choice(["USD", "EUR"])
    return {"price": price, "currency": currency, "orderId": f"load-{serial}", "itemCode": f"SKU-{rng.randint(0, 19)}"}


def one_request(merchant: Merchant, kind: str, rng: random.Random, body: dict, created: list) -> requests.Response:
    if kind == "create":
        return merchant.post("/invoices", body)
    if kind == "get":
        return merchant.get(f"/invoices/{rng.choice(created)['id']}")
    if kind == "search":
        return merchant.get("/invoices", rng.choice([{"limit": "10"}, {"itemCode": f"SKU-{rng.randint(0, 19)}"}]))
    return merchant.get("/rates")


def client(job: tuple) -> tuple[list, list]:
    """One client process: `count` requests (or until `deadline`); the timings and the invoices acknowledged."""
    number, base_url, pem, token, count, deadline, mix = job
    merchant = Merchant(base_url, pem, token)
    rng = random.Random(number)
    timings, created = [], []
    for index in range(count):
        if time.time() > deadline:
            break
        kind = mix[index % len(mix)] if mix else rng.choices(KINDS, WEIGHTS)[0]
        if kind == "get" and not created:
            kind = "create"
        body = new_invoice(rng, f"{number}-{index}")
        started = time.perf_counter()
        try:
            response = one_request(merchant, kind, rng, body, created)
        except requests.RequestException as error:
            timings.append((kind, type(error).__name__, time.perf_counter() - started))
            continue
        timings.append((kind, response.status_code, time.perf_counter() - started))
        if kind == "create" and response.status_code == 200:
            data = response.json()["data"]
            # What the service acknowledged, with the price and currency as asked (a mismatch shows on reading back).
            answered = {key: data[key] for key in ("id", "btcPrice", "bitcoinAddress", "orderId")}
            created.append({**answered, "price": float(body["price"]), "currency": body["currency"]})
    return timings, created


def read_back(job: tuple) -> list[str]:
    """Problems found reading these invoices back (none when each is there as it was acknowledged)."""
    base_url, pem, token, invoices = job
    merchant = Merchant(base_url, pem, token)
    problems = []
    for acknowledged in invoices:
        response = None
        for _ in range(3):  # a slow answer is not a lost invoice: ask again before calling it missing
            try:
                response = merchant.get(f"/invoices/{acknowledged['id']}")
                break
            except requests.RequestException:
                continue
        if response is None:
            problems.append(f"{acknowledged['id']}: no answer in 3 tries")
            continue
        if response.status_code != 200:
            problems.append(f"{acknowledged['id']}: HTTP {response.status_code}")
            continue
        stored = response.json()["data"]
        changed = [key for key, value in acknowledged.items() if stored.get(key) != value]
        if changed:
            problems.append(f"{acknowledged['id']}: {', '.join(changed)} differ from the create's answer")
    return problems


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


class LocalService:
    """`make run`'s service (scripts/run_local.py) on free loopback ports, its output in a log file.

    It runs from a copy of the tree: `chalice local` restarts whenever a file under its project
    changes, and edits or a test run in the working tree would otherwise restart it mid-run.
    """

    def __init__(self):
        self.tree = Path(tempfile.mkdtemp(prefix="paylambda-load-")) / "paylambda"
        copy_tree(self.tree)
        self.port, dynamodb_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Kept open for the service to write to while it runs, and kept afterwards for reading.
        self.log = tempfile.NamedTemporaryFile(prefix="paylambda-load-", suffix=".log", delete=False)  # noqa: SIM115
        self.environment = {
            **os.environ,
            "PORT": str(self.port),
            "LOCAL_DYNAMODB_PORT": str(dynamodb_port),
            # run_local.py's settings, for the administration CLI.
            "DYNAMODB_ENDPOINT": f"http://127.0.0.1:{dynamodb_port}",
            "STAGE": "local",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            # Mainnet wallets, and loopback only: the watcher's Esplora is a closed port here.
            "BITCOIN_NETWORK": "main",
            "ESPLORA_URL": f"http://127.0.0.1:{free_port()}",
            "PYTHONPATH": str(self.tree),
        }
        self.process = subprocess.Popen(
            [sys.executable, str(self.tree / "scripts" / "run_local.py")],
            cwd=self.tree,
            env=self.environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self, seconds: float = 120) -> None:
        give_up = time.time() + seconds
        while time.time() < give_up:
            if self.process.poll() is not None:
                sys.exit(f"make run's service stopped (exit {self.process.returncode}); see {self.log.name}")
            try:
                if requests.get(f"{self.url}/rates", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        sys.exit(f"make run's service did not answer in {seconds:.0f} s; see {self.log.name}")

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "chalicelib.cli", *args],
            cwd=self.tree,
            env=self.environment,
            capture_output=True,
            text=True,
            input="",
        )
        if result.returncode:
            self.stop()
            sys.exit(f"chalicelib.cli {args[0]} failed: {result.stderr}")
        return result.stdout.strip()

    def merchant_pairing_code(self) -> str:
        store_id = self.cli("create-store", "--owner", "admin", "--name", "Load test shop", "--wallet", BIP84_ZPUB)
        # "pairing code CODE (merchant), expires ..."
        return self.cli("create-pairing-code", "--store", store_id, "--facade", "merchant").split()[2]

    def stop(self) -> None:
        # Ctrl-C, as make run is stopped: run_local.py stops chalice local and moto.
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # Whatever it started and left behind (chalice local when stopped while starting): its own session.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        shutil.rmtree(self.tree.parent, ignore_errors=True)


def run_clients(pool, jobs: list) -> tuple[list, list, float]:
    started = time.perf_counter()
    timings, created = [], []
    for some_timings, some_created in pool.map(client, jobs):
        timings += some_timings
        created += some_created
    return timings, created, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000, help="requests in all (default 6000)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--seconds", type=float, default=900, help="time bound of the loaded run (default 900)")
    parser.add_argument("--url", help="a running service (default: start one as make run does)")
    parser.add_argument("--pairing-code", help="with --url: a merchant pairing code of a store there")
    options = parser.parse_args()
    if options.url and not options.pairing_code:
        parser.error("--url needs --pairing-code (a merchant code: python -m chalicelib.cli create-pairing-code)")
    if options.url and urlsplit(options.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--url must be on this machine (loopback): this is a load test")

    service = None if options.url else LocalService()
    base_url = options.url.rstrip("/") if options.url else service.url
    try:
        pem, token = pair(base_url, options.pairing_code or service.merchant_pairing_code())
        with multiprocessing.Pool(options.clients) as pool:
            baseline_mix = [kind for kind in KINDS for _ in range(BASELINE_PER_KIND)]
            baseline, baseline_created, baseline_seconds = run_clients(
                pool, [(0, base_url, pem, token, len(baseline_mix), time.time() + options.seconds, baseline_mix)]
            )
            share = -(-options.requests // options.clients)
            deadline = time.time() + options.seconds
            jobs = [(n + 1, base_url, pem, token, share, deadline, None) for n in range(options.clients)]
            timings, created, seconds = run_clients(pool, jobs)
            acknowledged = baseline_created + created
            chunks = [acknowledged[n :: options.clients] for n in range(options.clients)]
            problems = [p for found in pool.map(read_back, [(base_url, pem, token, c) for c in chunks]) for p in found]
    finally:
        if service:
            service.stop()

    report(options, base_url, service, baseline, baseline_seconds, timings, seconds, acknowledged, problems)
    addresses = Counter(invoice["bitcoinAddress"] for invoice in acknowledged)
    server_errors = sum(1 for _, status, _ in timings + baseline if isinstance(status, int) and status >= 500)
    failed = server_errors or problems or len(addresses) < len(acknowledged) or len(timings) < MIN_REQUESTS
    return 1 if failed else 0


def report(options, base_url, service, baseline, baseline_seconds, timings, seconds, acknowledged, problems) -> None:
    where = f"{base_url} (make run's service, log {service.log.name})" if service else base_url
    print(f"paylambda load: {len(timings):,} signed requests from {options.clients} client processes against {where}")
    print(
        f"in {seconds:.1f} s ({len(timings) / seconds:.1f} requests/s); baseline: one client, {len(baseline)} requests"
    )
    print()
    header = ("kind", "requests", "p50 ms", "p95 ms", "p99 ms", "baseline p50 ms", "answers")
    rows = [header]
    for kind in (*KINDS, "all"):
        loaded = [t for k, _, t in timings if kind in (k, "all")]
        alone = [t for k, _, t in baseline if kind in (k, "all")]
        statuses = Counter(status for k, status, _ in timings if kind in (k, "all"))
        answers = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items(), key=str))
        rows.append(
            (
                kind,
                f"{len(loaded):,}",
                f"{statistics.median(loaded) * 1000:.1f}" if loaded else "-",
                f"{percentile(loaded, 0.95):.1f}" if loaded else "-",
                f"{percentile(loaded, 0.99):.1f}" if loaded else "-",
                f"{statistics.median(alone) * 1000:.1f}" if alone else "-",
                answers or "-",
            )
        )
    print_table(rows)
    print()
    statuses = Counter(status for _, status, _ in timings)
    server_errors = sum(count for status, count in statuses.items() if isinstance(status, int) and status >= 500)
    other_errors = {
        status: count for status, count in statuses.items() if status != 200 and status not in range(500, 600)
    }
    addresses = len({invoice["bitcoinAddress"] for invoice in acknowledged})
    read_ok = len(acknowledged) - len(problems)
    print_table(
        [
            ("figure", "value", "target", "baseline"),
            ("requests under load", f"{len(timings):,}", f">= {MIN_REQUESTS:,}", f"{len(baseline)}"),
            (
                "throughput, requests/s",
                f"{len(timings) / seconds:.1f}",
                "more than one client",
                f"{len(baseline) / baseline_seconds:.1f}",
            ),
            ("5xx answers", str(server_errors), "0", "-"),
            ("other errors, by status", json.dumps(other_errors, default=str) if other_errors else "none", "-", "-"),
            ("acknowledged invoices read back intact", f"{read_ok:,}/{len(acknowledged):,}", "all", "-"),
            ("distinct receive addresses", f"{addresses:,}/{len(acknowledged):,}", "all", "-"),
        ]
    )
    for problem in problems[:20]:
        print(f"PROBLEM: {problem}")


def print_table(rows: list[tuple]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths))


if __name__ == "__main__":
    sys.exit(main())
