"""Posting one notification: what counts as delivered, and the guard against server-side request forgery."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.messaging.notifications import post_json
from chalicelib.settings import get_settings


@pytest.fixture
def receiver():
    """Answers every POST with the status (and Location) the test sets."""
    answers = {"status": 200, "location": None, "delay": 0.0}
    bodies = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(
                (self.path, self.headers["Content-Type"], self.rfile.read(int(self.headers["Content-Length"])))
            )
            time.sleep(answers["delay"])
            self.send_response(answers["status"])
            if answers["location"]:
                self.send_header("Location", answers["location"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    server.answers, server.bodies = answers, bodies
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [200, 201, 204])
def test_any_2xx_is_delivered(receiver, status):
    receiver.answers["status"] = status
    assert post_json(f"{receiver.url}/ipn?shop=1", b'{"id": "x"}', timeout=2, allow_private=True) == (status, None)
    assert receiver.bodies == [("/ipn?shop=1", "application/json", b'{"id": "x"}')]


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_other_answers_are_failures(receiver, status):
    receiver.answers["status"] = status
    assert post_json(f"{receiver.url}/ipn", b"{}", timeout=2, allow_private=True) == (status, f"HTTP {status}")


def test_a_receiver_slower_than_the_timeout_is_a_failure(receiver):
    # Shops fetch the invoice again before they answer: the deployed wait is 30 s, a test's is shorter.
    assert get_settings().notification_timeout_seconds == 30
    receiver.answers["delay"] = 1.0
    status, error = post_json(f"{receiver.url}/ipn", b"{}", timeout=0.2, allow_private=True)
    assert (status, error) == (None, "TimeoutError: timed out")


def test_redirects_are_not_followed(receiver):
    receiver.answers.update(status=302, location="http://169.254.169.254/latest/meta-data/")
    assert post_json(f"{receiver.url}/ipn", b"{}", timeout=2, allow_private=True) == (302, "HTTP 302")
    assert len(receiver.bodies) == 1


def test_an_unreachable_receiver_is_a_failure_with_no_status():
    status, error = post_json("http://127.0.0.1:9/ipn", b"{}", timeout=2, allow_private=True)
    assert status is None
    assert "Connection" in error or "refused" in error.lower()


def test_an_unresolvable_host_is_a_failure():
    status, error = post_json("http://no-such-host.invalid/ipn", b"{}", timeout=2, allow_private=True)
    assert (status, error.startswith("cannot resolve no-such-host.invalid")) == (None, True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/ipn",
        "http://localhost:{port}/ipn",
        "http://[::1]:{port}/ipn",
        "http://10.1.2.3:{port}/ipn",
        "http://192.168.0.10:{port}/ipn",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:{port}/ipn",
        "http://0.0.0.0:{port}/ipn",
    ],
)
def test_private_addresses_are_refused_when_not_allowed(url, receiver):
    target = url.format(port=receiver.server_address[1])
    status, error = post_json(target, b"{}", timeout=2, allow_private=False)
    assert status is None
    assert error.startswith("refused:")
    assert receiver.bodies == []
