"""What the payment tests run against: a clock, an Esplora-compatible chain, an IPN receiver, the SQS queue.

Loaded as a pytest plugin by conftest.py. The settings below are read when
chalicelib first loads them, which is after this module runs.

- `Chain` + `EsploraServer` (scripts/local_chain.py, the chain `make run` serves): a toy
  mempool and block chain served over HTTP the way the Esplora API serves them; the
  test pays addresses, mines blocks, replaces transactions, and can make the server
  answer 429/503 or hold answers back.
- `IpnReceiver`: a merchant's notification endpoint that fails as often as told.
- `drain`: the SQS consumer's loop, on the real (moto) queue, with time driven by
  the test clock: a message is handled at the time SQS would have delivered it.
"""

import json
import os
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from scripts.local_chain import Chain, EsploraServer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ESPLORA_PORT = _free_port()
QUEUE_NAME = "paylambda-test-notifications"
CHECKS_QUEUE_NAME = "paylambda-test-checks"
os.environ.update(
    {
        "CHECKS_QUEUE": CHECKS_QUEUE_NAME,
        "ESPLORA_URL": f"http://127.0.0.1:{ESPLORA_PORT}",
        # boto3 reads this one itself: SQS goes to the same moto server as DynamoDB.
        "AWS_ENDPOINT_URL_SQS": os.environ["DYNAMODB_ENDPOINT"],
        "NOTIFICATIONS_QUEUE": QUEUE_NAME,
        # The IPN receiver listens on 127.0.0.1.
        "ALLOW_PRIVATE_NOTIFICATION_URLS": "true",
        # Back-offs are waited out on the test clock (see `drain`), not in real time.
        "NOTIFICATION_MAX_DELAY_SECONDS": "0",
        "ESPLORA_TIMEOUT_SECONDS": "5",
    }
)

MINUTE = 60_000
HOUR = 60 * MINUTE
# Far enough ahead that every invoice made so far has left the watch.
AFTER_EVERYTHING = 3 * 24 * HOUR


class FakeClock:
    """Milliseconds, starting a minute after the real time; the test moves it forward.

    Invoices are stamped with the real time when the API makes them; the watcher's
    first run comes after that, as the scheduled one would.
    """

    def __init__(self):
        self.now = int(time.time() * 1000) + MINUTE

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


class IpnReceiver(ThreadingHTTPServer):
    """A merchant's notificationURL: records every POST, answers 500 to the first `fail(path, n)` ones."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _IpnHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.lock = threading.Lock()
        self.failures: dict[str, int] = defaultdict(int)
        # Seconds each answer takes, to make deliveries overlap.
        self.delay = 0.0
        # (path, status answered, parsed body) in arrival order.
        self.received: list[tuple[str, int, dict]] = []
        # (exact body, X-Paylambda-Signature header) in arrival order.
        self.signed: list[tuple[bytes, str | None]] = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def fail(self, path: str, times: int) -> None:
        self.failures[path] = times

    def accepted(self, path: str) -> list[dict]:
        return [body for p, status, body in self.received if p == path and status == 200]


class _IpnHandler(BaseHTTPRequestHandler):
    server: IpnReceiver

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = json.loads(raw)
        path = urlsplit(self.path).path
        time.sleep(self.server.delay)
        with self.server.lock:
            failing = self.server.failures[path] > 0
            self.server.failures[path] -= failing
            status = 500 if failing else 200
            self.server.received.append((path, status, body))
            self.server.signed.append((raw, self.headers["X-Paylambda-Signature"]))
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format, *args):
        pass


class Queue:
    """The notifications queue on moto's server, read the way the Lambda event source reads it."""

    def __init__(self, sqs, url: str):
        self.sqs = sqs
        self.url = url

    def receive_all(self) -> list[dict]:
        messages = []
        while batch := self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
        ).get("Messages", []):
            messages += batch
        return messages

    def delete(self, message: dict) -> None:
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])

    def release(self, message: dict) -> None:
        self.sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )

    def purge(self) -> None:
        for message in self.receive_all():
            self.delete(message)


def drain(queue: Queue, clock: FakeClock, invoice_ids, *, until: int | None = None, rounds: int = 100) -> int:
    """Run the consumer until no message for `invoice_ids` is due by `until` (or at all); returns messages handled.

    Each message is handed to the same function the Lambda handler calls, at the time SQS
    would have delivered it: the clock moves forward to its due time, as if the test had
    waited. Messages of other invoices belong to earlier tests and are dropped unread.
    """
    from chalicelib.messaging import notifications

    handled = 0
    for _ in range(rounds):
        messages = sorted(queue.receive_all(), key=lambda message: json.loads(message["Body"])["due"])
        due_now = []
        for message in messages:
            body = json.loads(message["Body"])
            if body["invoiceId"] not in invoice_ids:
                queue.delete(message)
            elif until is not None and body["due"] > until:
                queue.release(message)
            else:
                due_now.append((body["due"], message))
        if not due_now:
            return handled
        for due, message in due_now:
            clock.now = max(clock.now, due)
            notifications.handle_message(message["Body"], now=clock.now)
            queue.delete(message)
            handled += 1
    raise AssertionError(f"the queue did not settle in {rounds} rounds")


# What EventBridge hands the scheduled watcher (`jobs.watch_payments`).
SCHEDULED_EVENT = {
    "version": "0",
    "id": "1",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "1",
    "time": "2024-01-01T00:00:00Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {},
}


def sats(invoice: dict) -> int:
    return invoice["paymentTotals"]["BTC"]


def btc(amount: int) -> str:
    return f"{Decimal(amount) / 100_000_000:.8f}"


@dataclass
class Merchant:
    """A shop's server: bitpay 2.6.1910's client, paired with a merchant token for the test store."""

    client: object
    token: str

    def create_invoice(self, price: str = "10", **fields) -> dict:
        return self.client.create_invoice({"price": price, "currency": "USD", "token": self.token, **fields})

    def get_invoice(self, invoice_id: str) -> dict:
        return self.client.get_invoice(invoice_id, token=self.token)


def pair_merchant(api_url: str, store) -> Merchant:
    """The store's server, paired through a merchant-made pairing code."""
    from bitpay import key_utils
    from bitpay.client import Client

    from chalicelib.security import tokens

    client = Client(api_uri=api_url, pem=key_utils.generate_pem())
    pairing = tokens.create_pairing_code(store.store_id, "merchant")
    return Merchant(client, client.pair_pos_client(pairing.pairing_code)["merchant"])


@pytest.fixture
def shop(api_url, store, chain):
    return pair_merchant(api_url, store)


def run_watcher(checks: Queue, now: int, client):
    """One planner run at `now`, and the checkers on every message it queued, at the same time.

    Returns what the checks did (a watcher.Report).
    """
    from chalicelib.payments import watcher

    watcher.plan(now)
    return check_queued(checks, now, client)


def check_queued(checks: Queue, now: int, client):
    """The checkers take every queued message at `now`; returns what the checks did (a watcher.Report)."""
    from chalicelib.payments import watcher

    report = watcher.Report()
    while messages := checks.receive_all():
        _, done = watcher.handle_messages([(m["MessageId"], m["Body"]) for m in messages], now, client)
        for message in messages:
            checks.delete(message)
        report.add(done)
    return report


def run_watcher_handlers(checks: Queue, context=None) -> None:
    """What AWS runs: the scheduled planner, then the checker's handler on the messages, as the event source
    hands them over (a message the checker reports failed comes back after its visibility timeout)."""
    from chalicelib import jobs
    from tests.lambda_events import sqs_event

    jobs.watch_payments(SCHEDULED_EVENT, context)
    arn = "arn:aws:sqs:us-east-1:123456789012:" + CHECKS_QUEUE_NAME
    while messages := checks.receive_all():
        answer = jobs.check_payments(sqs_event(messages, arn), context)
        assert answer == {"batchItemFailures": []}, answer
        for message in messages:
            checks.delete(message)


@pytest.fixture
def watch(clock, esplora, checks_queue):
    """One watcher run (planner and checkers) at the test clock's time."""
    return lambda: run_watcher(checks_queue, clock.now, esplora)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(scope="session")
def esplora_server(dynamodb):
    server = EsploraServer(ESPLORA_PORT, Chain(FakeClock()))
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def notifications_queue(dynamodb):
    import boto3

    sqs = boto3.client("sqs", region_name=os.environ["AWS_DEFAULT_REGION"])
    return Queue(sqs, sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"])


@pytest.fixture(scope="session")
def checks_queue(dynamodb):
    import boto3

    sqs = boto3.client("sqs", region_name=os.environ["AWS_DEFAULT_REGION"])
    return Queue(sqs, sqs.create_queue(QueueName=CHECKS_QUEUE_NAME)["QueueUrl"])


@pytest.fixture
def chain(esplora_server, clock, notifications_queue, checks_queue):
    """A fresh chain on the Esplora server, with no invoice of an earlier test still watched.

    Earlier invoices reuse this test's addresses (every test store derives from index 0),
    so they are first run to the end of their watch on an empty chain.
    """
    from chalicelib.payments.esplora import EsploraClient

    esplora_server.chain = Chain(FakeClock())
    checks_queue.purge()
    run_watcher(checks_queue, clock.now + AFTER_EVERYTHING, EsploraClient(esplora_server.url))
    notifications_queue.purge()
    esplora_server.chain = Chain(clock)
    return esplora_server.chain


@pytest.fixture
def esplora(chain, esplora_server):
    """A client for the test chain, as the watcher builds it from the settings (no waiting between retries)."""
    from chalicelib.payments.esplora import EsploraClient

    return EsploraClient(esplora_server.url, concurrency=4, timeout=5, sleep=lambda seconds: None)


SENDER = "payments@shop.example"


@pytest.fixture
def email_settings(monkeypatch):
    """Set environment variables for the emails (`set(**env)`), re-read by the settings and the SES client."""
    from chalicelib.messaging import mail
    from chalicelib.settings import get_settings

    def set_env(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        mail._ses.cache_clear()

    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()
    mail._ses.cache_clear()


class SesOutbox:
    """The mail moto's SES server accepted, read from its SES backend.

    moto's server runs in this process (scripts/local_aws.py); its /moto-api/data.json shows
    the same messages but serializes every model of every service to do it, which takes
    seconds once the suite has filled DynamoDB.
    """

    def __init__(self):
        self.seen = len(self._all())

    @staticmethod
    def _all() -> list:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        return ses_backends[DEFAULT_ACCOUNT_ID][os.environ["AWS_DEFAULT_REGION"]].sent_messages

    def sent(self) -> list[dict]:
        """What was sent since this outbox was made: [{source, destinations, subject, body}]."""
        return [
            {name: getattr(message, name) for name in ("source", "destinations", "subject", "body")}
            for message in self._all()[self.seen :]
        ]


@pytest.fixture
def ses_outbox(dynamodb, email_settings):
    """Emails through moto's SES (the same server as DynamoDB), from a verified sender."""
    import boto3

    boto3.client("ses", endpoint_url=dynamodb, region_name=os.environ["AWS_DEFAULT_REGION"]).verify_email_identity(
        EmailAddress=SENDER
    )
    email_settings(EMAIL_SENDER=SENDER, AWS_ENDPOINT_URL_SESV2=dynamodb)
    return SesOutbox()


class SmtpSink:
    """A real SMTP server (aiosmtpd) on localhost, keeping every message it receives."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        self.port = _free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes, policy

        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 Message accepted"

    def stop(self):
        self.controller.stop()


@pytest.fixture
def smtp_sink(email_settings):
    sink = SmtpSink()
    email_settings(EMAIL_SENDER=SENDER, SMTP_HOST="127.0.0.1", SMTP_PORT=str(sink.port))
    yield sink
    sink.stop()


@pytest.fixture
def ipn_receiver():
    receiver = IpnReceiver()
    yield receiver
    receiver.shutdown()
    receiver.server_close()
