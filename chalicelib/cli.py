"""Administration from a terminal: `python -m chalicelib.cli COMMAND`.

It talks to the same tables as the service, through the same settings:
DYNAMODB_ENDPOINT for the local DynamoDB, AWS credentials and the *_TABLE
variables for a deployed stack (`make admin` sets them for either).
"""

import argparse
import getpass
import sys

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError
from pynamodb.exceptions import PynamoDBException

from chalicelib.billing import stores
from chalicelib.errors import ApiError, NotFound
from chalicelib.models import create_tables
from chalicelib.security import identity, sessions, tokens, users
from chalicelib.settings import get_settings


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("Password: ")
    if password != getpass.getpass("Password again: "):
        raise ApiError("the passwords differ")
    return password


def _create_tables(args: argparse.Namespace) -> None:
    created = create_tables()
    print(f"created: {', '.join(created)}" if created else "all tables exist")


def _create_user(args: argparse.Namespace) -> None:
    user = users.create_user(args.login, _read_password(), is_admin=args.admin)
    print(f"created user {user.login}")


def _existing_user(login: str):
    user = users.get_user(login)
    if user is None:
        raise NotFound(f"user {login} does not exist")
    return user


def _existing_store(store_id: str):
    store = stores.get_store(store_id)
    if store is None:
        raise NotFound(f"no store with id {store_id}")
    return store


def _create_store(args: argparse.Namespace) -> None:
    owner = _existing_user(args.owner).login
    store = stores.create_store(owner, args.name, args.currency, wallet=args.wallet)
    print(store.store_id)


def _list_stores(args: argparse.Namespace) -> None:
    for store in stores.stores_of(_existing_user(args.owner).login):
        wallet = "wallet set" if store.wallet else "no wallet"
        print(f"{store.store_id}\t{store.name}\t{store.default_currency}\t{wallet}")


def _set_wallet(args: argparse.Namespace) -> None:
    store = stores.set_wallet(_existing_store(args.store), None if args.clear else args.wallet)
    print(f"store {store.store_id}: {'wallet set' if store.wallet else 'no wallet'}")


def _reset_password(args: argparse.Namespace) -> None:
    user = _existing_user(args.login)
    users.set_password(user, _read_password())
    # Whoever knew the old password may be signed in: nobody stays signed in with it.
    sessions.end_all(user.login)
    print(f"password of {user.login} reset; its sessions are signed out")


def _list_tokens(args: argparse.Namespace) -> None:
    for token in tokens.for_store(_existing_store(args.store).store_id):
        print(f"{tokens.reference(token)}\t{token.facade}\t{token.status}\t{token.label or ''}")


def _revoke_token(args: argparse.Namespace) -> None:
    store = _existing_store(args.store)
    # A token's value is a credential, shown once: the reference from list-tokens names it too.
    found = tokens.find(args.token)
    value = found.token if found is not None else tokens.find_in_store(store.store_id, args.token).token
    tokens.revoke(value, store.store_id)
    print("token revoked")


def _create_pairing_code(args: argparse.Namespace) -> None:
    _existing_store(args.store)
    sin = identity.sin_from_public_key(args.public_key) if args.public_key else args.sin
    token = tokens.create_pairing_code(args.store, args.facade, args.label, sin)
    print(f"pairing code {token.pairing_code} ({token.facade}), expires {token.pairing_expiration:%Y-%m-%d %H:%M} UTC")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m chalicelib.cli", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)

    commands.add_parser("create-tables", help="create every missing table").set_defaults(run=_create_tables)

    command = commands.add_parser("create-user", help="create a user; the password is read from stdin or a prompt")
    command.add_argument("login")
    command.add_argument("--admin", action="store_true")
    command.set_defaults(run=_create_user)

    command = commands.add_parser("create-store", help="create a store; prints its id")
    command.add_argument("--owner", required=True)
    command.add_argument("--name", required=True)
    command.add_argument("--currency", default="USD")
    command.add_argument("--wallet", help="extended public key or output descriptor")
    command.set_defaults(run=_create_store)

    command = commands.add_parser("list-stores", help="a user's stores")
    command.add_argument("--owner", required=True)
    command.set_defaults(run=_list_stores)

    command = commands.add_parser("set-wallet", help="set or clear a store's wallet (its receive addresses)")
    command.add_argument("--store", required=True)
    wallet = command.add_mutually_exclusive_group(required=True)
    wallet.add_argument("--wallet", help="extended public key or output descriptor")
    wallet.add_argument("--clear", action="store_true", help="remove the wallet: the store can make no invoice")
    command.set_defaults(run=_set_wallet)

    command = commands.add_parser(
        "reset-password", help="set a user's password (read from stdin or a prompt) and sign out their sessions"
    )
    command.add_argument("login")
    command.set_defaults(run=_reset_password)

    command = commands.add_parser("list-tokens", help="a store's tokens: reference, facade, status, label")
    command.add_argument("--store", required=True)
    command.set_defaults(run=_list_tokens)

    command = commands.add_parser("revoke-token", help="revoke a token and the pending codes its client made")
    command.add_argument("--store", required=True)
    command.add_argument("token", help="the token's value, or its reference from list-tokens")
    command.set_defaults(run=_revoke_token)

    command = commands.add_parser("create-pairing-code", help="a code a client claims with POST /tokens")
    command.add_argument("--store", required=True)
    command.add_argument("--facade", choices=tokens.PAIRABLE_FACADES, default="merchant")
    command.add_argument("--label")
    key = command.add_mutually_exclusive_group()
    key.add_argument("--public-key", help="restrict the code to this client key (hex)")
    key.add_argument("--sin", help="restrict the code to this client id")
    command.set_defaults(run=_create_pairing_code)
    return root


def _storage_failure(error: Exception) -> str:
    """What went wrong talking to DynamoDB, in a line that says what to do."""
    cause = getattr(error, "cause", None) or error
    endpoint = get_settings().dynamodb_endpoint
    if isinstance(cause, NoCredentialsError):
        return "no AWS credentials: configure them (aws configure, AWS_PROFILE), or use make run's storage (make admin)"
    if isinstance(cause, EndpointConnectionError):
        where = f"the local DynamoDB at {endpoint} (is make run running?)" if endpoint else "DynamoDB"
        return f"cannot reach {where}"
    code = getattr(error, "cause_response_code", None) or getattr(error, "response", {}).get("Error", {}).get("Code")
    if code == "ResourceNotFoundException":
        return "a table is missing: run create-tables, or check the stage or stack named"
    message = getattr(error, "cause_response_message", None) or getattr(error, "msg", None) or str(error)
    return f"DynamoDB refused the request: {message}"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (ApiError, identity.InvalidKey) as error:
        message = getattr(error, "message", error)
    except (PynamoDBException, BotoCoreError, ClientError) as error:
        message = _storage_failure(error)
    except KeyboardInterrupt:
        return 130
    else:
        return 0
    print(f"error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
