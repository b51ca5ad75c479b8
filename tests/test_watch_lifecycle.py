"""The watcher under load and trouble: planner and checkers on the (moto) checks queue, time on the test clock.

Invoices are made through the API by a paired BitPay client; the planner queues them
and the checkers take the queued messages when the test says, so a backlog is a
test choosing to run the checkers late. What must hold whatever the load: the final
check at the expiry, open invoices before the rest, no buyer judged late for the
watcher's lag, one invoice's failure never another's, and no double counting.
"""

import json
import threading
import time
from types import SimpleNamespace

import pytest

from chalicelib import jobs, models
from chalicelib.billing import stores
from chalicelib.messaging import notifications
from chalicelib.models import InvoiceModel, NotificationModel
from chalicelib.payments import watcher
from chalicelib.settings import get_settings
from tests.lambda_events import LambdaContext
from tests.payments_support import HOUR, MINUTE, SCHEDULED_EVENT, check_queued, drain, run_watcher, sats

pytestmark = pytest.mark.parametrize("api_url", [""], indirect=True)


def status(invoice: dict) -> tuple[str, str | bool]:
    stored = InvoiceModel.get(invoice["id"], consistent_read=True)
    return stored.status, stored.exception_status or False


def planned(now: int) -> set[str]:
    """What the planner would queue at `now` (open or late), without queueing it."""
    settings = get_settings()
    window = settings.monitoring_window_seconds * 1000
    return {
        invoice.invoice_id
        for invoice in watcher.watched()
        if watcher.is_open(invoice, now) or watcher.late_check_due(invoice, now, window)
    }


@pytest.fixture
def setting(monkeypatch):
    """`setting(NAME, value)`: a deployment setting for this test only."""

    def set_variable(name: str, value: int) -> None:
        monkeypatch.setenv(name, str(value))
        get_settings.cache_clear()

    yield set_variable
    monkeypatch.undo()
    get_settings.cache_clear()


def test_every_open_invoice_is_checked_every_run_and_once_more_at_its_expiry(shop, chain, watch, clock):
    paid_at_the_end = shop.create_invoice()
    unpaid = shop.create_invoice()
    expiration = paid_at_the_end["expirationTime"]
    for minute in range(0, 15, 5):
        clock.now = paid_at_the_end["invoiceTime"] + minute * MINUTE + 1
        assert {paid_at_the_end["id"], unpaid["id"]} <= planned(clock.now)

    # Until the chain answers a check after the expiry they stay open, however late the run (one was missed).
    assert {paid_at_the_end["id"], unpaid["id"]} <= planned(expiration + 90_000)
    # Paid a second before the expiry: the final check, the first run after it, sees it in time.
    clock.now = expiration - 1000
    chain.pay(paid_at_the_end["bitcoinAddress"], sats(paid_at_the_end))
    clock.now = expiration + 30_000
    report = watch()
    assert report.changed == 2
    assert status(paid_at_the_end) == ("paid", False)
    assert status(unpaid) == ("expired", False)
    # Decided: from now on they are late checks, on the back-off schedule.
    assert not {paid_at_the_end["id"], unpaid["id"]} & planned(clock.now + MINUTE)


def test_a_payment_just_before_expiry_found_late_under_a_backlog_is_on_time(shop, chain, esplora, clock, checks_queue):
    created = shop.create_invoice(notificationURL="http://127.0.0.1:9/", fullNotifications=True)
    chain.pay(created["bitcoinAddress"], sats(created) // 2)
    clock.now = created["expirationTime"] - 1000
    chain.pay(created["bitcoinAddress"], sats(created) - sats(created) // 2)
    # The planner queued the final check at the expiry; the checkers are minutes behind.
    watcher.plan(created["expirationTime"] + 1)
    watcher.plan(created["expirationTime"] + MINUTE + 1)
    clock.now = created["expirationTime"] + 6 * MINUTE
    check_queued(checks_queue, clock.now, esplora)

    assert status(created) == ("paid", False)
    assert [n["event"]["code"] for n in notifications.history(created["id"])] == [1003]
    invoice = shop.get_invoice(created["id"])
    assert invoice["amountPaid"] == sats(created)


def test_a_payment_after_a_check_that_answered_after_expiry_is_late(shop, chain, watch, clock):
    created = shop.create_invoice()
    clock.now = created["expirationTime"] + 1
    watch()
    assert status(created) == ("expired", False)
    clock.advance(2 * MINUTE)
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    assert status(created) == ("expired", "paidLate")


def test_a_backlog_larger_than_a_run_never_delays_the_open_invoices(
    shop, store, chain, watch, esplora, clock, checks_queue, setting
):
    setting("MONITORING_WINDOW_SECONDS", 3600)
    waiting = [shop.create_invoice() for _ in range(5)]
    clock.now = max(invoice["expirationTime"] for invoice in waiting) + 1
    watch()
    assert {status(invoice) for invoice in waiting} == {("expired", False)}
    setting("LATE_CHECKS_PER_RUN", 2)
    stores.update_settings(store, {**stores.settings_of(store), "invoice_expiration_minutes": "1440"})
    open_ones = [shop.create_invoice() for _ in range(2)]
    for open_invoice in open_ones:
        chain.pay(open_invoice["bitcoinAddress"], sats(open_invoice))
    # Every waiting invoice is due its last check at the end of the window: more than one run can take.
    clock.now += HOUR + 1

    plan = watcher.plan(clock.now)
    assert sorted(plan.open) == sorted(invoice["id"] for invoice in open_ones)
    assert (len(plan.late), plan.deferred) == (2, 3)
    messages = checks_queue.receive_all()
    # The open ones (a message for each partition page holding some) before the late ones.
    kinds = [json.loads(m["Body"])["open"] for m in messages]
    assert kinds[-1] is False and all(kinds[:-1])
    # The checker takes its open invoices first, whatever order the messages come in.
    watcher.handle_messages([(m["MessageId"], m["Body"]) for m in reversed(messages)], clock.now, esplora)
    for message in messages:
        checks_queue.delete(message)
    assert {status(invoice) for invoice in open_ones} == {("paid", False)}

    runs = 0
    while {invoice["id"] for invoice in waiting} & {invoice.invoice_id for invoice in watcher.watched()}:
        runs += 1
        clock.advance(MINUTE)
        watch()
        assert runs <= 3
    assert runs == 2


def _throttle_updates_of(invoice_id: str):
    """DynamoDB refuses every write to this invoice as throttled (after the SDK's own retries)."""

    def refuse(params, **_):
        body = json.loads(params["body"])
        if body.get("Key", {}).get("invoice_id", {}).get("S") == invoice_id:
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeds"}
            return SimpleNamespace(status_code=400, headers={}), {"Error": error, "ResponseMetadata": {}}
        return None

    return refuse


def test_a_throttled_write_in_the_middle_of_a_batch_leaves_the_others_recorded_and_is_retried(
    shop, chain, esplora, clock, checks_queue
):
    created = [shop.create_invoice() for _ in range(3)]
    for invoice in created:
        chain.pay(invoice["bitcoinAddress"], sats(invoice))
    throttled = created[1]["id"]
    events = InvoiceModel._get_connection().connection.client.meta.events
    refuse = _throttle_updates_of(throttled)
    events.register("before-call.dynamodb.UpdateItem", refuse)
    try:
        watcher.plan(clock.now)
        # One invocation takes them all (a message for each partition of the watch index holding some).
        messages = checks_queue.receive_all()
        redeliver, report = watcher.handle_messages([(m["MessageId"], m["Body"]) for m in messages], clock.now, esplora)
    finally:
        events.unregister("before-call.dynamodb.UpdateItem", refuse)
    for message in messages:
        checks_queue.delete(message)

    assert (report.changed, report.failed, redeliver) == (2, [throttled], [])
    assert [status(invoice) for invoice in created] == [("paid", False), ("new", False), ("paid", False)]
    # The failed check comes back in a message of its own (delayed on SQS; here taken at once).
    retry = json.loads(watcher._message([throttled], True, {}, 2))
    _, again = watcher.handle_messages([("retry", json.dumps(retry))], clock.now, esplora)
    assert again.changed == 1
    assert status(created[1]) == ("paid", False)


def test_overlapping_planner_runs_count_nothing_twice_and_notify_once(shop, chain, esplora, clock, checks_queue):
    created = shop.create_invoice(notificationURL="http://127.0.0.1:9/", fullNotifications=True)
    chain.pay(created["bitcoinAddress"], sats(created))
    planners = [threading.Thread(target=watcher.plan, args=(clock.now,)) for _ in range(2)]
    for planner in planners:
        planner.start()
    for planner in planners:
        planner.join(timeout=30)
    messages = checks_queue.receive_all()
    assert len(messages) == 2
    # Two checkers take the two messages at once.
    reports = []
    checkers = [
        threading.Thread(
            target=lambda m=m: reports.append(
                watcher.handle_messages([(m["MessageId"], m["Body"])], clock.now, esplora)
            )
        )
        for m in messages
    ]
    for checker in checkers:
        checker.start()
    for checker in checkers:
        checker.join(timeout=30)
    for message in messages:
        checks_queue.delete(message)

    assert sum(report.changed for _, report in reports) == 1
    invoice = shop.get_invoice(created["id"])
    assert (invoice["status"], invoice["amountPaid"], len(invoice["transactions"])) == ("paid", sats(created), 1)
    assert [n["event"]["code"] for n in notifications.history(created["id"])] == [1003]


def test_the_sweep_runs_when_the_watch_fails(shop, chain, esplora, clock, checks_queue, notifications_queue):
    created = shop.create_invoice(notificationURL="http://127.0.0.1:9/", transactionSpeed="high")
    chain.pay(created["bitcoinAddress"], sats(created))
    run_watcher(checks_queue, clock.now, esplora)
    notifications_queue.purge()  # the notification's queue message is lost
    [notification] = NotificationModel.query(created["id"])
    notification.update([NotificationModel.next_attempt.set(notification.next_attempt - HOUR)])

    # Esplora stops answering and the checker runs out of time: the sweep is a function of its own.
    chain.fail_next("/blocks/tip/height", *[503] * 100)
    chain.fail_next("/address/", *[503] * 100)
    jobs.watch_payments(SCHEDULED_EVENT, LambdaContext("WatchPayments", 60))
    messages = checks_queue.receive_all()
    for message in messages:
        checks_queue.delete(message)
    jobs.sweep_notifications(SCHEDULED_EVENT, LambdaContext("SweepNotifications", 60))

    assert drain(notifications_queue, clock, {created["id"]}, until=clock.now) == 1
    assert len(NotificationModel.get(created["id"], 1).attempts) == 1


def test_expiry_is_decided_from_the_clock_when_the_chain_server_is_down(shop, chain, esplora, clock, checks_queue):
    created = shop.create_invoice(notificationURL="http://127.0.0.1:9/", fullNotifications=True)
    unpaid = shop.create_invoice(notificationURL="http://127.0.0.1:9/", fullNotifications=True)
    clock.now = created["expirationTime"] - 1000
    chain.pay(created["bitcoinAddress"], sats(created))
    clock.now = max(created["expirationTime"], unpaid["expirationTime"]) + 1
    chain.fail_next("/blocks/tip/height", *[503] * 5)
    report = run_watcher(checks_queue, clock.now, esplora)

    assert report.errors == 2
    assert status(created) == status(unpaid) == ("expired", False)
    assert [n["event"]["code"] for n in notifications.history(unpaid["id"])] == [1004]
    # Only an answer counts as a check after the expiry: the payment made in time, seen now, is on time.
    clock.advance(MINUTE)
    run_watcher(checks_queue, clock.now, esplora)
    assert status(created) == ("paid", False)
    assert [n["event"]["code"] for n in notifications.history(created["id"])] == [1004, 1003]
    assert status(unpaid) == ("expired", False)
    # And now that the chain has answered, a payment first seen later is late.
    clock.advance(3 * MINUTE)
    chain.pay(unpaid["bitcoinAddress"], sats(unpaid))
    run_watcher(checks_queue, clock.now, esplora)
    assert status(unpaid) == ("expired", "paidLate")


def test_a_late_check_that_finds_nothing_writes_nothing(shop, chain, watch, clock):
    created = shop.create_invoice()
    clock.now = created["expirationTime"] + 1
    watch()
    expired = InvoiceModel.get(created["id"], consistent_read=True)
    [indexed] = [invoice for invoice in watcher.watched() if invoice.invoice_id == created["id"]]
    window = get_settings().monitoring_window_seconds * 1000
    checks = 0
    for _ in range(24 * 60 - 1):
        clock.advance(MINUTE)
        if watcher.late_check_due(indexed, clock.now, window):
            checks += 1
            chain.requests.clear()
            watch()
            assert any(created["bitcoinAddress"] in path for path in chain.requests)
    assert 20 <= checks <= 45
    assert InvoiceModel.get(created["id"], consistent_read=True).version == expired.version


def test_one_checker_given_both_overlapping_plans_checks_each_invoice_once(shop, chain, esplora, clock, checks_queue):
    created = shop.create_invoice()
    chain.pay(created["bitcoinAddress"], sats(created))
    watcher.plan(clock.now)
    watcher.plan(clock.now)
    messages = checks_queue.receive_all()
    assert len(messages) == 2
    redeliver, report = watcher.handle_messages([(m["MessageId"], m["Body"]) for m in messages], clock.now, esplora)
    for message in messages:
        checks_queue.delete(message)

    assert (redeliver, report.checked, report.changed, report.failed) == ([], 1, 1, [])
    assert status(created) == ("paid", False)


def test_open_invoices_are_queued_as_their_partitions_are_read_before_the_waiting_ones(
    shop, chain, watch, clock, checks_queue, monkeypatch
):
    # A message of one invoice: each page holding one open invoice makes a whole message, queued at once.
    monkeypatch.setattr(watcher, "CHECK_BATCH", 1)
    waiting = [shop.create_invoice() for _ in range(2)]
    clock.now = max(invoice["expirationTime"] for invoice in waiting) + 1
    watch()  # their final check: from now on they wait for late payments, apart from the open ones
    # Open invoices in at least two partitions of the watch index.
    network = get_settings().bitcoin_network
    opened = {}
    while len(set(opened.values())) < 2:
        invoice_id = shop.create_invoice()["id"]
        opened[invoice_id] = models.watch_partition(network, invoice_id)
    calls = []

    def query(params, **_):
        calls.append(("query", params["ExpressionAttributeValues"][":0"]["S"]))

    def send(params, **_):
        calls.append(("send", [json.loads(entry["MessageBody"])["invoices"] for entry in params["Entries"]]))

    dynamodb_events = models.shared_connection().client.meta.events
    sqs_events = notifications.sqs().meta.events
    dynamodb_events.register("provide-client-params.dynamodb.Query", query)
    sqs_events.register("provide-client-params.sqs.SendMessageBatch", send)
    try:
        # Every 20 minutes (their back-off's multiple) the waiting ones are due a late check too.
        plan = watcher.plan(clock.now + 20 * MINUTE)
    finally:
        dynamodb_events.unregister("provide-client-params.dynamodb.Query", query)
        sqs_events.unregister("provide-client-params.sqs.SendMessageBatch", send)

    assert sorted(plan.open) == sorted(opened)
    assert sorted(plan.late) == sorted(invoice["id"] for invoice in waiting)

    def sent(invoice_id: str) -> int:
        return next(n for n, (kind, what) in enumerate(calls) if kind == "send" and [invoice_id] in what)

    # Each open invoice is queued right after its partition's page is read, before the next partition is.
    for invoice_id, partition in opened.items():
        assert calls[sent(invoice_id) - 1] == ("query", partition)
    # Only the open invoices' partitions were read before they were all queued.
    last_open_send = max(map(sent, opened))
    assert all("#open#" in partition for kind, partition in calls[:last_open_send] if kind == "query")
    assert any(kind == "query" and "#open#" not in partition for kind, partition in calls[last_open_send:])


def test_the_checker_asks_esplora_about_the_planned_addresses_while_it_reads_the_invoices(
    shop, chain, esplora, clock, checks_queue
):
    created = [shop.create_invoice() for _ in range(3)]
    watcher.plan(clock.now)
    addresses = {invoice["bitcoinAddress"] for invoice in created}
    asked_first = []

    def hold_the_read(**_):
        # The read waits (up to 2 s) for Esplora to have been asked about every address.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not addresses <= {p.split("/")[2] for p in list(chain.requests)}:
            time.sleep(0.01)
        asked_first.append(addresses <= {p.split("/")[2] for p in list(chain.requests) if p.startswith("/address/")})

    events = models.shared_connection().client.meta.events
    events.register("before-send.dynamodb.BatchGetItem", hold_the_read)
    try:
        report = check_queued(checks_queue, clock.now, esplora)
    finally:
        events.unregister("before-send.dynamodb.BatchGetItem", hold_the_read)
    assert asked_first == [True]
    assert report.checked == 3 and report.failed == []


def test_a_batch_writes_more_invoices_at_once_than_esplora_answers_in_flight(
    shop, chain, esplora, clock, checks_queue, setting
):
    # One Esplora request at a time; every invoice of the batch paid, so every check writes. Each write
    # is held until as many are under way as there are invoices (or a second has passed): writes that
    # queue behind as few recorders as Esplora has slots never get there.
    setting("ESPLORA_CONCURRENCY", 1)
    created = [shop.create_invoice() for _ in range(6)]
    for invoice in created:
        chain.pay(invoice["bitcoinAddress"], sats(invoice))
    watcher.plan(clock.now)
    messages = checks_queue.receive_all()
    writing, peak, lock = [0], [0], threading.Condition()

    def start(**_):
        with lock:
            writing[0] += 1
            peak[0] = max(peak[0], writing[0])
            lock.notify_all()
            lock.wait_for(lambda: writing[0] >= len(created), timeout=1)

    def end(**_):
        with lock:
            writing[0] -= 1

    events = models.shared_connection().client.meta.events
    operations = ("UpdateItem", "TransactWriteItems")
    for operation in operations:
        events.register(f"before-call.dynamodb.{operation}", start)
        events.register(f"after-call.dynamodb.{operation}", end)
    try:
        _, report = watcher.handle_messages([(m["MessageId"], m["Body"]) for m in messages], clock.now, esplora)
    finally:
        for operation in operations:
            events.unregister(f"before-call.dynamodb.{operation}", start)
            events.unregister(f"after-call.dynamodb.{operation}", end)
    for message in messages:
        checks_queue.delete(message)

    assert (report.checked, report.changed, report.failed) == (6, 6, [])
    assert peak[0] == len(created)
    assert {status(invoice) for invoice in created} == {("paid", False)}
