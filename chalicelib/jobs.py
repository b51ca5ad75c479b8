"""The functions AWS runs on a schedule and on queue messages (locally, `scripts/run_local.py` runs them).

The watcher and the notifier load on a job's first run: the API's cold start never needs them.
Lambda runs each job from this module (its handler is `chalicelib.jobs.NAME`) without importing
app.py, so the blueprint is never registered there: nothing here may use the app (`jobs.log`...).
"""

import logging

from chalice import Blueprint, Rate

from chalicelib.settings import get_settings

jobs = Blueprint(__name__)
logger = logging.getLogger(__name__)
# The runs' summaries are the watcher's heartbeat in CloudWatch Logs; the Lambda runtime's root
# logger passes on what this logger lets through.
logger.setLevel(logging.INFO)
# Check messages per checker invocation (each names up to watcher.CHECK_BATCH invoices).
CHECK_MESSAGES_PER_INVOCATION = 5


@jobs.schedule(Rate(1, unit=Rate.MINUTES))
def watch_payments(event) -> None:
    """The planner: queues the invoices due a check (deployed with reserved concurrency 1, no retries)."""
    from chalicelib.payments import watcher

    plan = watcher.plan()
    logger.info(
        "watch plan: %d watched, %d open and %d late queued, %d late deferred",
        plan.watched, len(plan.open), len(plan.late), plan.deferred,
    )  # fmt: skip


@jobs.on_sqs_message(queue=get_settings().checks_queue, batch_size=CHECK_MESSAGES_PER_INVOCATION)
def check_payments(event) -> dict:
    """A checker: its messages' invoices against Esplora; SQS delivers again only the messages reported here."""
    from chalicelib.payments import watcher

    redeliver, report = watcher.handle_messages([(record.to_dict()["messageId"], record.body) for record in event])
    logger.info("watch checks: %s", report)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in redeliver]}


# On its own schedule, so that no watcher trouble (a timed-out or failing check) ever holds it up.
@jobs.schedule(Rate(1, unit=Rate.MINUTES))
def sweep_notifications(event) -> None:
    from chalicelib.messaging import notifications
    from chalicelib.models import now_ms

    requeued = notifications.requeue_overdue(now_ms())
    logger.info("notifications re-queued for %d invoices", len(requeued))


# One message at a time: a failure then retries only that invoice's message.
@jobs.on_sqs_message(queue=get_settings().notifications_queue, batch_size=1)
def deliver_notifications(event) -> None:
    from chalicelib.messaging import notifications

    for record in event:
        notifications.handle_message(record.body)
