"""The functions AWS runs on a schedule and on queue messages (locally, `scripts/run_local.py` runs them).

The watcher and the notifier load on a job's first run: the API's cold start never needs them.
Lambda runs each job from this module (its handler is `chalicelib.jobs.NAME`) without importing
app.py, so the blueprint is never registered there: nothing here may use the app (`jobs.log`...).
"""

import logging

from chalice import Blueprint, Rate

from .settings import get_settings

jobs = Blueprint(__name__)
logger = logging.getLogger(__name__)
# The run's summary is the watcher's heartbeat in CloudWatch Logs; the Lambda runtime's root
# logger passes on what this logger lets through.
logger.setLevel(logging.INFO)


@jobs.schedule(Rate(1, unit=Rate.MINUTES))
def watch_payments(event) -> None:
    from . import notifications, watcher
    from .models import now_ms

    # The budget comes from the invocation itself, so it follows the timeout the function is deployed with.
    context = event.context
    remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else None
    report = watcher.run(remaining_seconds=remaining)
    requeued = notifications.requeue_overdue(now_ms())
    logger.info("watcher: %s; notifications re-queued for %d invoices", report, len(requeued))


# One message at a time: a failure then retries only that invoice's message.
@jobs.on_sqs_message(queue=get_settings().notifications_queue, batch_size=1)
def deliver_notifications(event) -> None:
    from . import notifications

    for record in event:
        notifications.handle_message(record.body)
