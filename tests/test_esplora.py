"""The Esplora client against the test chain served over HTTP: paging, back-off, bounded concurrency."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.payments.esplora import EsploraClient, EsploraError, payments_in

ADDRESS = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"


def test_tip_height_and_payments_with_confirmations(chain, esplora, clock):
    first = chain.pay(ADDRESS, 10_000)
    chain.mine(3)
    second = chain.pay(ADDRESS, 2_500, also=((ADDRESS, 500),))
    chain.pay("bc1qsomeoneelse", 99_999)

    assert esplora.tip_height() == chain.height
    answer = esplora.address_transactions(ADDRESS)
    found = {(p.txid, p.vout): p for p in payments_in(answer, ADDRESS, chain.height, clock.now)}
    assert set(found) == {(first, 0), (second, 0), (second, 1)}
    assert (found[first, 0].amount, found[first, 0].confirmations) == (10_000, 3)
    assert found[first, 0].block_height == chain.height - 2
    assert found[first, 0].block_time == chain.block_times[chain.height - 2] * 1000
    assert (found[second, 0].amount, found[second, 0].confirmations, found[second, 0].block_height) == (2_500, 0, None)
    assert found[second, 1].amount == 500


def test_confirmed_history_beyond_the_first_page_is_fetched(chain, esplora, clock):
    txids = [chain.pay(ADDRESS, 1_000 + n) for n in range(60)]
    chain.mine()
    payments = payments_in(esplora.address_transactions(ADDRESS), ADDRESS, chain.height, clock.now)
    assert sorted(p.txid for p in payments) == sorted(txids)
    assert sum(1 for path in chain.requests if "/txs/chain/" in path) == 2


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_rate_limits_and_server_errors_are_retried_with_back_off(chain, esplora_server, status):
    slept = []
    client = EsploraClient(esplora_server.url, retries=4, backoff_seconds=0.5, sleep=slept.append)
    chain.fail_next("/blocks/tip/height", status, status, status)
    assert client.tip_height() == chain.height
    assert slept == [0.5, 1.0, 2.0]


def test_retry_after_is_honoured(chain, esplora_server):
    slept = []
    client = EsploraClient(esplora_server.url, sleep=slept.append)
    chain.retry_after = "7"
    chain.fail_next("/blocks/tip/height", 429)
    assert client.tip_height() == chain.height
    assert slept == [7.0]


def test_gives_up_after_the_last_retry(chain, esplora_server):
    slept = []
    client = EsploraClient(esplora_server.url, retries=2, sleep=slept.append)
    chain.fail_next("/address/", 503, 503, 503, 503)
    with pytest.raises(EsploraError, match="HTTP 503 after 3 attempts"):
        client.address_transactions(ADDRESS)
    assert len(slept) == 2


def test_client_errors_are_not_retried(chain, esplora_server):
    slept = []
    client = EsploraClient(esplora_server.url, sleep=slept.append)
    chain.fail_next("/address/", 400)
    with pytest.raises(EsploraError, match="HTTP 400"):
        client.address_transactions(ADDRESS)
    assert slept == []


def test_an_unreachable_server_is_an_esplora_error():
    with pytest.raises(EsploraError):
        EsploraClient("http://127.0.0.1:9", retries=1, sleep=lambda seconds: None).tip_height()


def test_requests_in_flight_never_exceed_the_concurrency(chain, esplora_server, clock, monkeypatch):
    in_flight, peak, lock = 0, 0, threading.Lock()
    original = esplora_server.RequestHandlerClass.do_GET

    def counting_get(self):
        nonlocal in_flight, peak
        # Counted before the answer is sent: a client may start its next request as soon as it has the
        # answer, before this thread would have counted itself out.
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        original(self)

    monkeypatch.setattr(esplora_server.RequestHandlerClass, "do_GET", counting_get)
    client = EsploraClient(esplora_server.url, concurrency=3)
    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(lambda n: client.address_transactions(f"bc1qaddress{n}"), range(24)))
    assert peak == 3


def test_an_answer_that_is_not_a_transaction_list_is_an_error(chain, esplora_server, monkeypatch):
    def garbage(handler):
        handler._send(200, '{"not": "a list"}' if "/txs" in handler.path else "tip")

    monkeypatch.setattr(esplora_server.RequestHandlerClass, "do_GET", garbage)
    client = EsploraClient(esplora_server.url)
    with pytest.raises(EsploraError, match="expected a list of transactions"):
        client.address_transactions(ADDRESS)
    with pytest.raises(EsploraError, match="unexpected tip height"):
        client.tip_height()


def test_paced_requests_stay_within_the_servers_rate_limit_however_many_are_in_flight(chain):
    import socket

    from tests.payments_support import EsploraServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = EsploraServer(port, chain, latency=0.05, rate_limit=20)
    try:
        # 8 in flight at 50 ms each could start 160 a second; paced to 19 a second, none is refused.
        client = EsploraClient(f"http://127.0.0.1:{port}", concurrency=8, requests_per_second=19, retries=0)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: client.tip_height(), range(24)))
        assert server.refused == 0
        assert time.monotonic() - started >= 23 / 19
    finally:
        server.shutdown()


def test_connections_are_kept_alive_between_requests(chain, esplora_server):
    client = EsploraClient(esplora_server.url, concurrency=1)
    before = esplora_server.connections
    for _ in range(5):
        assert client.tip_height() == chain.height
    assert esplora_server.connections - before == 1


def test_an_oversized_answer_is_refused_and_the_next_request_still_answers(chain, esplora_server, monkeypatch):
    from chalicelib.payments import esplora

    original = esplora_server.RequestHandlerClass.do_GET

    def oversized_tip(handler):
        if handler.path == "/blocks/tip/height":
            return handler._send(200, "1" * (esplora.MAX_RESPONSE_BYTES + 1))
        return original(handler)

    monkeypatch.setattr(esplora_server.RequestHandlerClass, "do_GET", oversized_tip)
    client = EsploraClient(esplora_server.url, concurrency=1)
    with pytest.raises(EsploraError, match="answer larger than"):
        client.tip_height()
    assert payments_in(client.address_transactions(ADDRESS), ADDRESS, 1, 0) == []


def test_a_checker_keeps_its_client_across_invocations_and_each_checker_has_its_own():
    from chalicelib.payments import watcher

    mine = watcher.default_client()
    assert watcher.default_client() is mine  # its kept-alive connections and its pacing carry over
    other = []
    thread = threading.Thread(target=lambda: other.append(watcher.default_client()))
    thread.start()
    thread.join()
    assert other[0] is not mine  # another checker paces to its own share of the server's limit
