"""`make run` itself (scripts/run_local.py) for the tests of its local test chain, on free loopback ports.

It runs from a copy of the tree: `chalice local` restarts whenever a file under its project
changes, and the suite writes screenshots into the working tree. One start serves the session.
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from bitpay.client import Client
from bitpay.key_utils import generate_pem

from scripts.run_local import copy_tree
from tests.payments_support import _free_port

ROOT = Path(__file__).resolve().parent.parent
# What a shell gives `make run`; the suite's own settings (its network, moto, chain) must not leak in.
_PASSED_ON = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


@dataclass
class LocalStack:
    url: str
    environment: dict
    tree: Path
    log: Path
    admin_password: str
    demo_store: str

    def cli(self, *args: str) -> str:
        """`make admin ARGS=...` against this stack's storage (deploy/admin.py --local)."""
        result = subprocess.run(
            [sys.executable, "-m", "deploy.admin", "--local", *args],
            cwd=self.tree,
            env=self.environment,
            capture_output=True,
            text=True,
            input="",
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


def _wait_for(log: Path, process: subprocess.Popen, url: str, seconds: float = 60) -> str:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        assert process.poll() is None, log.read_text()
        try:
            if requests.get(f"{url}/login", timeout=5).status_code == 200:
                return log.read_text()
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"make run did not serve in {seconds} s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    tree = tmp_path_factory.mktemp("make-run") / "paylambda"
    copy_tree(tree)
    port, dynamodb_port = _free_port(), _free_port()
    environment = {name: os.environ[name] for name in _PASSED_ON if name in os.environ}
    environment.update(
        PORT=str(port),
        LOCAL_DYNAMODB_PORT=str(dynamodb_port),
        LOCAL_SMTP_PORT=str(_free_port()),
        LOCAL_CHAIN_PORT=str(_free_port()),
        PYTHONPATH=str(tree),
        PYTHONUNBUFFERED="1",
        # chalice local restarts on any file written under its project, bytecode too.
        PYTHONDONTWRITEBYTECODE="1",
    )
    log = tree.parent / "make-run.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, str(tree / "scripts" / "run_local.py")],
            cwd=tree,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        printed = _wait_for(log, process, url)
        [password] = re.findall(r"login admin, password (\S+)", printed)
        [store_id] = re.findall(r"Demo store \(id (\w+)\)", printed)
        yield LocalStack(url, environment, tree, log, password, store_id)
    finally:
        # Ctrl-C, as make run is stopped; then whatever it left in its own session.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)


@pytest.fixture(scope="session")
def demo_shop(local_stack) -> Client:
    """A shop's server paired with make run's demo store through `make admin ... create-pairing-code`."""
    answer = local_stack.cli("create-pairing-code", "--store", local_stack.demo_store, "--facade", "merchant")
    client = Client(api_uri=local_stack.url, pem=generate_pem())
    client.pair_pos_client(answer.split()[2])
    return client
