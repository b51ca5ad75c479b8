"""The administrators' CLI, run as a real process against the local DynamoDB."""

import os
import subprocess
import sys
import uuid

import pytest

from chalicelib import users
from chalicelib.models import StoreModel, TokenModel
from tests.conftest import new_wallet
from tests.test_auth import Client


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
    )


@pytest.fixture
def login(dynamodb):
    return f"cli-{uuid.uuid4().hex[:8]}"


def test_create_user_reads_the_password_from_stdin(login):
    result = cli("create-user", login, "--admin", stdin="a long enough password\n")
    assert result.returncode == 0, result.stderr
    assert users.check_credentials(login, "a long enough password").is_admin
    assert users.check_credentials(login, "wrong password") is None


def test_create_user_refuses_a_password_argument_and_duplicates(login):
    assert cli("create-user", login, "--password", "x").returncode != 0
    assert cli("create-user", login, stdin="a long enough password\n").returncode == 0
    duplicate = cli("create-user", login, stdin="another long password\n")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    short = cli("create-user", login + "x", stdin="short\n")
    assert short.returncode == 1 and "at least" in short.stderr


def test_store_and_pairing_code_lifecycle(login):
    assert cli("create-user", login, stdin="a long enough password\n").returncode == 0
    created = cli("create-store", "--owner", login, "--name", "CLI shop", "--currency", "eur", "--wallet", new_wallet())
    assert created.returncode == 0, created.stderr
    store_id = created.stdout.strip()
    store = StoreModel.get(store_id)
    assert (store.owner, store.name, store.default_currency) == (login, "CLI shop", "EUR")

    listed = cli("list-stores", "--owner", login)
    assert f"{store_id}\tCLI shop\tEUR\twallet set" in listed.stdout

    client = Client()
    code = cli("create-pairing-code", "--store", store_id, "--facade", "pos", "--public-key", client.public_key)
    assert code.returncode == 0, code.stderr
    pairing_code = code.stdout.split()[2]
    token = next(TokenModel.by_pairing_code.query(pairing_code))
    assert (token.store_id, token.facade, token.sin) == (store_id, "pos", client.sin)


@pytest.mark.parametrize(
    "args",
    [
        ("create-store", "--owner", "nobody-at-all", "--name", "x"),
        ("create-pairing-code", "--store", "no-such-store"),
        ("create-pairing-code", "--store", "x", "--facade", "admin"),
    ],
)
def test_bad_input_is_a_clear_error(args, dynamodb):
    result = cli(*args)
    assert result.returncode != 0
    assert "error" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_wallet_is_refused(login):
    assert cli("create-user", login, stdin="a long enough password\n").returncode == 0
    result = cli("create-store", "--owner", login, "--name", "x", "--wallet", "not a key")
    assert result.returncode == 1
    assert "error" in result.stderr and "Traceback" not in result.stderr
