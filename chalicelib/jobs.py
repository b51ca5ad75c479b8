"""The functions AWS runs on a schedule and on queue messages (locally, `scripts/run_local.py` runs them).

The watcher and the notifier load on a job's first run: the API's cold start never needs them.
"""

from chalice import Blueprint, Rate

from .settings import get_settings

jobs = Blueprint(__name__)


@jobs.schedule(Rate(1, unit=Rate.MINUTES))
def watch_payments(event) -> None:
    from . import notifications, watcher
    from .models import now_ms

    report = watcher.run()
    requeued = notifications.requeue_overdue(now_ms())
    jobs.log.info("watcher: %s; notifications re-queued for %d invoices", report, len(requeued))


# One message at a time: a failure then retries only that invoice's message.
@jobs.on_sqs_message(queue=get_settings().notifications_queue, batch_size=1)
def deliver_notifications(event) -> None:
    from . import notifications

    for record in event:
        notifications.handle_message(record.body)
