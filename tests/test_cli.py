"""The administrators' CLI, run as a real process against the local DynamoDB."""

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from chalicelib.billing import stores
from chalicelib.models import StoreModel, TokenModel
from chalicelib.security import sessions, tokens, users
from tests.conftest import PASSWORD, new_wallet
from tests.test_auth import Client

ROOT = Path(__file__).resolve().parent.parent
# No AWS account at all: no keys, no profile, no files, no instance metadata.
NO_AWS = {
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def cli(*args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=os.environ.copy() if env is None else env,
        timeout=60,
    )


def without_aws(environment: dict) -> dict:
    return {**{k: v for k, v in environment.items() if not k.startswith("AWS_")}, **NO_AWS}


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
        ("set-wallet", "--store", "no-such-store", "--clear"),
        ("reset-password", "nobody-at-all"),
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


def test_list_stores_of_a_missing_user_says_so(dynamodb):
    result = cli("list-stores", "--owner", "nobody")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "error: user nobody does not exist\n"


def test_set_wallet_claims_it_for_the_store_and_clear_releases_it(store, other_store):
    wallet = new_wallet()
    assert cli("set-wallet", "--store", store.store_id, "--wallet", wallet).returncode == 0
    changed = stores.get_store(store.store_id)
    assert changed.wallet == stores.normalise_wallet(wallet)
    # Nothing else about the store moved.
    assert (changed.name, changed.default_currency, changed.owner) == (store.name, store.default_currency, store.owner)

    taken = cli("set-wallet", "--store", other_store.store_id, "--wallet", wallet)
    assert taken.returncode == 1 and "already used by another store" in taken.stderr
    assert stores.get_store(other_store.store_id).wallet == other_store.wallet

    assert cli("set-wallet", "--store", store.store_id, "--clear").stdout.endswith("no wallet\n")
    assert stores.get_store(store.store_id).wallet is None
    assert cli("set-wallet", "--store", other_store.store_id, "--wallet", wallet).returncode == 0


def test_reset_password_replaces_it_and_signs_the_user_out(user):
    secret, _ = sessions.start(user.login)

    result = cli("reset-password", user.login.upper(), stdin="a brand new password\n")

    assert result.returncode == 0, result.stderr
    assert users.check_credentials(user.login, PASSWORD) is None
    assert users.check_credentials(user.login, "a brand new password") is not None
    assert sessions.find(secret) is None
    short = cli("reset-password", user.login, stdin="short\n")
    assert short.returncode == 1 and "at least" in short.stderr


def _active_token(store_id: str) -> TokenModel:
    client = Client()
    code = tokens.create_pairing_code(store_id, "merchant", "till 1", client.sin)
    return tokens.claim(code.pairing_code, client.sin)


def test_revoke_token_by_its_reference_or_its_value(store, other_store):
    first, second = _active_token(store.store_id), _active_token(store.store_id)
    listed = cli("list-tokens", "--store", store.store_id).stdout
    assert f"{tokens.reference(first)}\tmerchant\tactive\ttill 1\n" in listed
    assert tokens.reference(second) in listed and first.token not in listed

    # Another store's id does not reach it.
    assert cli("revoke-token", "--store", other_store.store_id, first.token).returncode == 1
    assert tokens.find(first.token).status == TokenModel.ACTIVE
    by_reference = cli("revoke-token", "--store", store.store_id, tokens.reference(first))
    by_value = cli("revoke-token", "--store", store.store_id, second.token)

    assert (by_reference.returncode, by_value.returncode) == (0, 0), by_reference.stderr + by_value.stderr
    assert tokens.find(first.token).status == tokens.find(second.token).status == TokenModel.REVOKED


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "environment, expected",
    [
        (lambda env: without_aws(env), "error: no AWS credentials"),
        (lambda env: {**env, "USERS_TABLE": "no-such-table"}, "error: a table is missing"),
        (
            lambda env: {**env, "DYNAMODB_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"},
            "error: cannot reach the local DynamoDB",
        ),
    ],
    ids=["no-credentials", "table-missing", "unreachable"],
)
def test_storage_failures_are_one_line(dynamodb, environment, expected):
    env = environment({**os.environ, "AWS_DEFAULT_REGION": "us-east-1"})
    result = cli("list-stores", "--owner", "anyone", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1, result.stderr


def make_admin(args: str, env: dict, stdin: str = "") -> subprocess.CompletedProcess:
    # -o: the suite's environment is installed already; make must not reinstall it.
    installed = [f"{Path(sys.executable).parent}/{stamp}" for stamp in (".installed", ".run-installed")]
    command = ["make", "--no-print-directory", "-s", *(f"--old-file={stamp}" for stamp in installed)]
    return subprocess.run(
        [*command, "admin", f"BIN={Path(sys.executable).parent}", f"ARGS={args}"],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_make_admin_uses_make_runs_storage_without_aws_credentials(dynamodb, login):
    # What `make run` leaves a terminal with: its port, and no AWS account (nor this suite's stage).
    port = dynamodb.rsplit(":", 1)[1]
    keep = {k: v for k, v in os.environ.items() if k not in ("DYNAMODB_ENDPOINT", "STAGE")}
    env = {**without_aws(keep), "LOCAL_DYNAMODB_PORT": port}

    assert make_admin("create-tables", env).returncode == 0
    created = make_admin(f"create-user {login}", env, stdin="a long enough password\n")

    assert (created.returncode, created.stdout, created.stderr) == (0, f"created user {login}\n", "")
    local = boto3.client("dynamodb", endpoint_url=dynamodb)
    assert local.get_item(TableName="paylambda-local-users", Key={"login": {"S": login}}).get("Item")
    # make run's stage, not another one's tables.
    assert users.get_user(login) is None
    nobody = make_admin("list-stores --owner nobody", env)
    assert nobody.returncode != 0 and "error: user nobody does not exist" in nobody.stderr


def test_admin_of_a_stack_without_credentials_is_one_line(dynamodb):
    env = {**without_aws(os.environ), "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [sys.executable, "-m", "deploy.admin", "--stack", "paylambda-prod", "list-stores", "--owner", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == "error: cannot read the stack paylambda-prod: Unable to locate credentials\n"
