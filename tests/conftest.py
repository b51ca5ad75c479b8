"""Shared fixtures: a moto DynamoDB server spoken to over HTTP, and the API served on localhost.

The environment is set before any `chalicelib` import, because the models
read their table names and endpoint when they are defined.
"""

import gc
import os
import socket
import uuid

import pytest

# The payment tests' Esplora chain, IPN receiver and notification queue (and their settings).
pytest_plugins = ["tests.payments_support", "tests.api_fixtures", "tests.local_stack"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MOTO_PORT = _free_port()
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "DYNAMODB_ENDPOINT": f"http://127.0.0.1:{MOTO_PORT}",
        "STAGE": "test",
        "RATE_SOURCE": "fixed",
        "BITCOIN_NETWORK": "main",
        # Every test's client posts from 127.0.0.1; tests/test_limits.py tries the real limits on its own.
        "LIMIT_PAIRING_FAILURES_PER_ADDRESS": "1000000/900",
        "LIMIT_PENDING_TOKENS_PER_ADDRESS": "1000000/3600",
    }
)
os.environ.pop("PUBLIC_BASE_URL", None)

PASSWORD = "correct horse battery"
# The BIP84 test vector account (mnemonic "abandon ... about"). A wallet belongs to one store, so only
# tests of the wallet alone use it; every test store gets a `new_wallet()`.
BIP84_ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
)


def new_wallet() -> str:
    """A wallet no other store has: a BIP84 account zpub of a random seed (a store's wallet is its own)."""
    from embit.bip32 import HDKey
    from embit.networks import NETWORKS

    account = HDKey.from_seed(os.urandom(32)).derive("m/84h/0h/0h").to_public()
    return account.to_base58(NETWORKS["main"]["zpub"])


@pytest.fixture(scope="session")
def dynamodb():
    from scripts.local_aws import start_local_aws

    server = start_local_aws(MOTO_PORT)
    from chalicelib.models import create_tables

    create_tables()
    yield os.environ["DYNAMODB_ENDPOINT"]
    server.stop()


@pytest.fixture(scope="session")
def chalice_app(dynamodb):
    from app import app

    return app


@pytest.fixture(scope="session", params=["", "/api"], ids=["root", "prefixed"])
def api_url(request, chalice_app):
    """The API's base URL, served at the root and under a stage-like prefix."""
    from tests.gateway import LocalApi

    server = LocalApi(chalice_app, prefix=request.param)
    yield server.url
    server.close()


@pytest.fixture
def user(dynamodb):
    from chalicelib.security import users

    return users.create_user(f"merchant-{uuid.uuid4().hex[:10]}", PASSWORD)


@pytest.fixture
def store(user):
    from chalicelib.billing import stores

    return stores.create_store(user.login, "Test shop", "USD", wallet=new_wallet())


@pytest.fixture
def other_store(dynamodb):
    """A store of another user, which `user` must not reach."""
    from chalicelib.billing import stores
    from chalicelib.security import users

    owner = users.create_user(f"other-{uuid.uuid4().hex[:10]}", PASSWORD)
    return stores.create_store(owner.login, "Someone else's shop", "EUR", wallet=new_wallet())


def pytest_unconfigure(config):
    # The in-process moto backends and fixtures leave a heap so large that the interpreter's final
    # garbage collection took minutes after the summary; frozen objects are not examined again.
    gc.freeze()
