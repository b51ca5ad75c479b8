"""One JSON line per HTTP request: route, method, status, latency and the store it was for.

The line is printed on its own (not through the runtime's log format), so CloudWatch Logs
Insights reads its fields directly (`filter status >= 500 | stats count() by route`). It
names the route's template (`/invoices/{invoice_id}`), never the query, headers or body, so
no token, password or signature reaches the logs. Whoever learns the store (the token's
authentication, a page's path) notes it.
"""

import json
import time
from contextvars import ContextVar

_store_id: ContextVar[str | None] = ContextVar("store_id", default=None)


def note_store(store_id: str | None) -> None:
    _store_id.set(store_id)


def middleware(event, get_response):
    """Chalice's HTTP middleware: the whole request, whatever answers it (a route, an error)."""
    started = time.perf_counter()
    _store_id.set(event.uri_params.get("store_id") if event.uri_params else None)
    status = 500
    try:
        response = get_response(event)
        status = response.status_code
        return response
    finally:
        line = {
            "route": event.path,
            "method": event.method,
            "status": status,
            "latencyMs": round((time.perf_counter() - started) * 1000, 1),
            "storeId": _store_id.get(),
            "requestId": (event.lambda_context and getattr(event.lambda_context, "aws_request_id", None)),
        }
        print(json.dumps(line), flush=True)
