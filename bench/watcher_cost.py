"""What a watcher run costs as invoices pile up: it should follow the watched invoices, not all of them.

Against moto's DynamoDB and the tests' Esplora chain (both on localhost), for a growing
number of finished invoices and a fixed number still watched, prints the time of one
watcher run (the planner and the checks it queued), the Esplora requests it made.

    PYTHONPATH=. python bench/watcher_cost.py
"""

import os
import socket
import statistics
import sys
import time

WATCHED = 25
FINISHED_STEPS = (0, 200, 800)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MOTO = f"http://127.0.0.1:{_free_port()}"
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "DYNAMODB_ENDPOINT": MOTO,
        "AWS_ENDPOINT_URL_SQS": MOTO,
        "CHECKS_QUEUE": "paylambda-bench-checks",
        "STAGE": "bench",
        "RATE_SOURCE": "fixed",
    }
)


def main() -> None:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = int(MOTO.rsplit(":", 1)[1])
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()

    from chalicelib.billing import invoices, stores
    from chalicelib.models import create_tables
    from chalicelib.payments import watcher
    from chalicelib.payments.esplora import EsploraClient
    from chalicelib.security import tokens, users
    from chalicelib.security.auth import Caller
    from scripts.local_chain import Chain, EsploraServer
    from tests.conftest import BIP84_ZPUB
    from tests.payments_support import ESPLORA_PORT, FakeClock

    # The suite's modules point the environment at their own moto server: back to this one.
    os.environ.update(
        {"DYNAMODB_ENDPOINT": MOTO, "AWS_ENDPOINT_URL_SQS": MOTO, "CHECKS_QUEUE": "paylambda-bench-checks"}
    )

    create_tables()
    users.create_user("bench", "correct horse battery")
    store = stores.create_store("bench", "Bench shop", "USD", wallet=BIP84_ZPUB)
    pairing = tokens.create_pairing_code(store.store_id, "pos")
    caller = Caller(identity=None, token=tokens.claim(pairing.pairing_code))
    clock = FakeClock()
    chain = Chain(clock)
    server = EsploraServer(ESPLORA_PORT, chain)
    client = EsploraClient(server.url, concurrency=4)

    sqs = boto3.client("sqs", region_name="us-east-1")
    checks_url = sqs.create_queue(QueueName=os.environ["CHECKS_QUEUE"])["QueueUrl"]

    def watch() -> None:
        """A planner run and the checks it queued, as the checkers take them."""
        watcher.plan(clock.now)
        while messages := sqs.receive_message(QueueUrl=checks_url, MaxNumberOfMessages=10).get("Messages"):
            watcher.handle_messages([(m["MessageId"], m["Body"]) for m in messages], clock.now, client)
            for message in messages:
                sqs.delete_message(QueueUrl=checks_url, ReceiptHandle=message["ReceiptHandle"])

    def run() -> tuple[float, int]:
        chain.requests.clear()
        started = time.perf_counter()
        watch()
        return time.perf_counter() - started, len(chain.requests)

    finished = 0
    print(f"{'finished':>9} {'watched':>8} {'run ms (median of 9)':>21} {'esplora requests':>17}")
    for target in FINISHED_STEPS:
        # Invoices paid and buried under six blocks leave the watch at the next run.
        fresh = [invoices.create(caller, {"price": "5", "currency": "USD"}) for _ in range(target - finished)]
        for invoice in fresh:
            chain.pay(invoice.address, invoice.btc_due_sats)
        chain.mine(6)
        watch()
        finished = target
        for invoice in watcher.watched():
            assert invoice.status == "new", "only the fixed set of unpaid invoices is still watched"
        while sum(1 for _ in watcher.watched()) < WATCHED:
            invoices.create(caller, {"price": "5", "currency": "USD"})
        run()  # warm-up: connections and caches
        samples = [run() for _ in range(9)]
        median = statistics.median(seconds for seconds, _ in samples) * 1000
        print(f"{finished:>9} {WATCHED:>8} {median:>21.1f} {samples[0][1]:>17}")
    server.shutdown()
    moto.stop()


if __name__ == "__main__":
    sys.exit(main())
