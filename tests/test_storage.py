"""Tables, TTL filtering on read, and keeping Scans off every request path."""

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chalicelib.errors import BadRequest
from chalicelib.models import ALL_MODELS, TokenModel, create_tables, transaction
from chalicelib.security import tokens, users
from tests.test_auth import Client


def test_create_tables_is_idempotent(dynamodb):
    assert create_tables() == []
    assert create_tables() == []
    for model in ALL_MODELS:
        assert model.exists()


def test_every_model_and_transaction_speaks_through_one_botocore_client(dynamodb):
    # Each botocore session and client is ~120 ms CPU and 11 MiB of a cold start.
    clients = {id(model._get_connection().connection.client) for model in ALL_MODELS}
    clients.add(id(transaction()._connection.client))
    assert len(clients) == 1


def test_ttl_is_enabled_on_tables_with_a_ttl_attribute(dynamodb):
    description = TokenModel._get_connection().connection._make_api_call(
        "DescribeTimeToLive", {"TableName": TokenModel.Meta.table_name}
    )
    ttl = description["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert ttl["AttributeName"] == "pairing_expiration"


def _expire(token: TokenModel) -> None:
    """What DynamoDB may still return after the TTL passed: the item, not yet deleted."""
    token.update(actions=[TokenModel.pairing_expiration.set(datetime.now(UTC) - timedelta(seconds=1))])


def test_expired_pending_token_reads_as_absent(store):
    pending = tokens.request_pairing(Client().sin, "merchant")
    assert tokens.find(pending.token) is not None
    _expire(pending)
    assert TokenModel.get(pending.token).pairing_expiration is not None  # still stored
    assert tokens.find(pending.token) is None
    assert pending.token not in [t.token for t in tokens.for_store(store.store_id)]
    with pytest.raises(BadRequest, match="expired"):
        tokens.approve(pending.pairing_code, store.store_id)


def test_expired_merchant_code_cannot_be_claimed(store):
    code = tokens.create_pairing_code(store.store_id, "merchant")
    assert code.token in [t.token for t in tokens.for_store(store.store_id)]
    _expire(code)
    assert code.token not in [t.token for t in tokens.for_store(store.store_id)]
    with pytest.raises(BadRequest, match="expired"):
        tokens.claim(code.pairing_code, Client().sin)


def test_activation_clears_the_expiration(store):
    code = tokens.create_pairing_code(store.store_id, "pos")
    tokens.claim(code.pairing_code)
    stored = TokenModel.get(code.token)
    assert stored.status == TokenModel.ACTIVE
    assert stored.pairing_expiration is None


def _calls_named(tree: ast.AST, name: str) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name
    ]


def test_no_request_path_scans():
    """Every DynamoDB read in the service is a GetItem or a Query on a key or index."""
    sources = [Path("app.py"), *Path("chalicelib").rglob("*.py")]
    scans = {str(path): _calls_named(ast.parse(path.read_text()), "scan") for path in sources}
    assert {path: lines for path, lines in scans.items() if lines} == {}


def test_deny_racing_an_approval_leaves_the_active_token(store, monkeypatch):
    pending = tokens.request_pairing(Client().sin, "merchant")
    read_before_the_approval = tokens.find_pairing(pending.pairing_code)
    tokens.approve(pending.pairing_code, store.store_id)
    monkeypatch.setattr(tokens, "find_pairing", lambda code: read_before_the_approval)

    with pytest.raises(BadRequest, match="already been used"):
        tokens.deny(pending.pairing_code)
    assert TokenModel.get(pending.token).status == TokenModel.ACTIVE


def test_unknown_and_known_logins_cost_the_same_hashing(user, monkeypatch):
    """An unknown login is hashed too, so timing does not reveal which logins exist."""
    hashed = []
    real_scrypt = users.hashlib.scrypt
    monkeypatch.setattr(users.hashlib, "scrypt", lambda *a, **k: hashed.append(1) or real_scrypt(*a, **k))
    users._decoy_hash()  # made once per process, before timing matters

    hashed.clear()
    assert users.check_credentials(f"{user.login}-unknown", "correct horse battery") is None
    unknown = len(hashed)
    hashed.clear()
    assert users.check_credentials(user.login, "wrong password here") is None
    assert unknown == len(hashed) == 1
