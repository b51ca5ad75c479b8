"""`make run`: a local DynamoDB and SQS (moto's server, in memory), the tables, an admin account, and `chalice local`.

Beside the API, threads do what AWS does on a schedule and on queue messages, by
calling the very handlers AWS calls (`chalicelib/jobs.py`) with AWS-shaped events: the
watch planner and the notification sweep every minute, the checker on the checks queue
and the consumer of the notification queue.
Invoice emails go to an SMTP sink in this process (aiosmtpd) instead of SES: it
accepts and logs each one, and the invoice's page lists them with their text.

On regtest (the default; BITCOIN_NETWORK=main, test or signet picks another network) it
serves its own test chain (scripts/local_chain.py) as the watcher's Esplora, with a demo
store owned by the admin account whose wallet is generated at start (anyone may create its
invoices, as BTCPay's "anyone can create invoices" allows), and the checkout's
test-chain buttons (pay, pay part, mine a block, expire now).

Ctrl-C stops all of it. Local data lives in memory only and is gone when it
stops; durable storage is DynamoDB on AWS.
"""

import logging
import os
import secrets
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.local_aws import start_local_aws  # noqa: E402
from scripts.local_chain import NETWORK, Chain, EsploraServer, WallClock, new_test_wallet  # noqa: E402

# What a copy of the tree to run from leaves out: history, environments, outputs and caches.
NOT_COPIED = (
    ".git",
    ".venv",
    "node_modules",
    "test-output",
    "dist",
    ".mutate",
    ".hypothesis",
    "__pycache__",
    "deployments",
)


def copy_tree(destination: Path) -> None:
    """The working tree copied to `destination`, for the suite and the benches to run this script from:
    `chalice local` restarts whenever a file under its project changes, as edits or a test run would."""
    shutil.copytree(ROOT, destination, ignore=shutil.ignore_patterns(*NOT_COPIED))


API_PORT = int(os.environ.get("PORT", "8000"))
DYNAMODB_PORT = int(os.environ.get("LOCAL_DYNAMODB_PORT", "8001"))
ADMIN_LOGIN = "admin"
WATCH_INTERVAL_SECONDS = 60
QUEUE_NAME = "paylambda-local-notifications"
CHECKS_QUEUE_NAME = "paylambda-local-checks"
SMTP_PORT = int(os.environ.get("LOCAL_SMTP_PORT", "8025"))
CHAIN_PORT = int(os.environ.get("LOCAL_CHAIN_PORT", "3002"))  # electrs' regtest port
DEMO_STORE = "Demo store"


class _SmtpSink:
    """Takes every email the consumer sends and logs who it was for; nothing leaves the machine."""

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes, policy

        message = message_from_bytes(envelope.content, policy=policy.default)
        print(f"Email to {', '.join(envelope.rcpt_tos)}: {message['Subject']}", flush=True)
        return "250 Message accepted"


def _start_smtp_sink():
    from aiosmtpd.controller import Controller

    controller = Controller(_SmtpSink(), hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    return controller


def _every(stop: threading.Event, seconds: int, job) -> None:
    """A scheduled job (the watch planner, the notification sweep) with EventBridge's event."""
    while not stop.is_set():
        event = {
            "version": "0", "id": secrets.token_hex(8), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "000000000000", "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": os.environ["AWS_DEFAULT_REGION"], "resources": [], "detail": {},
        }  # fmt: skip
        try:
            job(event, None)
        except Exception:
            logging.exception("%s failed", job.func.__name__)
        stop.wait(seconds)


def _consume_forever(stop: threading.Event, sqs, queue_url: str, consumer, batch_size: int) -> None:
    """What Lambda's SQS event source does: hand the consumer its messages and delete those it handled."""
    while not stop.is_set():
        try:
            # A short poll: the local server answers one request at a time (scripts/local_aws.py).
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=batch_size, WaitTimeSeconds=0)
        except Exception:
            logging.exception("queue %s unreadable", queue_url)
            stop.wait(5)
            continue
        if not messages.get("Messages"):
            stop.wait(1)
            continue
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "eventSource": "aws:sqs",
            }
            for m in messages["Messages"]
        ]
        try:
            answer = consumer({"Records": records}, None) or {}
        except Exception:
            # As on AWS: the messages come back when their visibility timeout ends.
            logging.exception("%s failed on %d messages", consumer.func.__name__, len(records))
            continue
        failed = {failure["itemIdentifier"] for failure in answer.get("batchItemFailures", [])}
        for record in records:
            if record["messageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"])


def main() -> int:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "DYNAMODB_ENDPOINT": f"http://127.0.0.1:{DYNAMODB_PORT}",
            # boto3 reads it: the notification queue lives on the same moto server.
            "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{DYNAMODB_PORT}",
            "NOTIFICATIONS_QUEUE": QUEUE_NAME,
            "CHECKS_QUEUE": CHECKS_QUEUE_NAME,
            "STAGE": "local",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(SMTP_PORT),
        }
    )
    os.environ.setdefault("EMAIL_SENDER", "paylambda@localhost")
    network = os.environ.setdefault("BITCOIN_NETWORK", NETWORK)
    # Regtest has no public server: unless told of another (a local bitcoind's electrs), the chain is ours.
    local_chain = network == "regtest" and not os.environ.get("ESPLORA_URL")
    if local_chain:
        os.environ["ESPLORA_URL"] = os.environ["LOCAL_CHAIN_URL"] = f"http://127.0.0.1:{CHAIN_PORT}"
    # Receivers under development listen on this machine or the local network.
    os.environ.setdefault("ALLOW_PRIVATE_NOTIFICATION_URLS", "true")

    print(f"Starting the local DynamoDB and SQS, the SMTP sink{' and the test chain' if local_chain else ''}...")
    chain = EsploraServer(CHAIN_PORT, Chain(WallClock())) if local_chain else None
    dynamodb = start_local_aws(DYNAMODB_PORT)
    smtp = _start_smtp_sink()
    stop = threading.Event()
    try:
        import boto3

        from chalicelib import jobs
        from chalicelib.billing import stores
        from chalicelib.models import create_tables
        from chalicelib.security import users
        from chalicelib.settings import get_settings

        create_tables()
        sqs = boto3.client("sqs", region_name=os.environ["AWS_DEFAULT_REGION"])
        queue_url = sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
        checks_url = sqs.create_queue(QueueName=CHECKS_QUEUE_NAME)["QueueUrl"]
        for target, args in [
            (_every, (stop, WATCH_INTERVAL_SECONDS, jobs.watch_payments)),
            (_every, (stop, WATCH_INTERVAL_SECONDS, jobs.sweep_notifications)),
            (_consume_forever, (stop, sqs, checks_url, jobs.check_payments, jobs.CHECK_MESSAGES_PER_INVOCATION)),
            (_consume_forever, (stop, sqs, queue_url, jobs.deliver_notifications, 1)),
        ]:
            threading.Thread(target=target, args=args, daemon=True).start()
        if users.get_user(ADMIN_LOGIN) is None:
            password = secrets.token_urlsafe(12)
            users.create_user(ADMIN_LOGIN, password, is_admin=True)
            print(f"Admin account: login {ADMIN_LOGIN}, password {password} (shown once)")
            if local_chain:
                demo = stores.create_store(ADMIN_LOGIN, DEMO_STORE, "USD", wallet=new_test_wallet())
                # BTCPay's "anyone can create invoices", so that a first invoice takes one command.
                stores.allow_public_invoices(demo, True)
                print(f"{DEMO_STORE} (id {demo.store_id}) for {ADMIN_LOGIN}, test wallet made now: {demo.wallet}")
                print(
                    f'An invoice to pay: curl -s -d \'{{"price": 10, "currency": "USD"}}\' '
                    f"-H 'Content-Type: application/json' 'http://127.0.0.1:{API_PORT}/invoices?storeId={demo.store_id}'"
                )
        print(f"Local DynamoDB and SQS (in memory) on http://127.0.0.1:{DYNAMODB_PORT}")
        print(f"Emails from {os.environ['EMAIL_SENDER']} to the SMTP sink on 127.0.0.1:{SMTP_PORT}")
        settings = get_settings()
        if local_chain:
            print(f"Test chain ({network}) on {settings.local_chain_url}: the checkout's buttons pay and mine on it")
        print(f"Payment watcher every {WATCH_INTERVAL_SECONDS}s on {network} against {settings.esplora_url}")
        print(f"API and pages on http://127.0.0.1:{API_PORT}  (Ctrl-C stops everything)")
        chalice = [str(Path(sys.executable).parent / "chalice"), "local", "--stage", "local", "--host", "127.0.0.1"]
        server = subprocess.Popen([*chalice, "--port", str(API_PORT)], cwd=ROOT)
        try:
            return server.wait()
        except KeyboardInterrupt:
            server.terminate()
            server.wait()
            return 0
    finally:
        stop.set()
        smtp.stop()
        dynamodb.stop()
        if chain is not None:
            chain.shutdown()


if __name__ == "__main__":
    sys.exit(main())
