"""The local stand-in for DynamoDB and SQS: moto's server on 127.0.0.1, spoken to over HTTP."""

import logging
import threading

from moto.server import ThreadedMotoServer


def _one_at_a_time(app):
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    return serialized


def start_local_aws(port: int) -> ThreadedMotoServer:
    """Start moto's server; `.stop()` it when done.

    DynamoDB applies each request atomically; moto's threaded server does not (two racing
    conditional writes can both pass, a failed transaction restores a stale table), so it
    serves one request at a time, and nothing may long-poll SQS on it.
    """
    # moto logs every request it serves.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    server._server.app = _one_at_a_time(server._server.app)
    return server
