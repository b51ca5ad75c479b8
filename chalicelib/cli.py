"""Administration from a terminal: `python -m chalicelib.cli COMMAND`.

It talks to the same tables as the service, through the same settings:
DYNAMODB_ENDPOINT for the local DynamoDB, AWS credentials and the *_TABLE
variables for a deployed stack.
"""

import argparse
import getpass
import sys

from . import identity, stores, tokens, users
from .errors import ApiError
from .models import create_tables


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


def _create_store(args: argparse.Namespace) -> None:
    if users.get_user(args.owner) is None:
        raise ApiError(f"no user named {args.owner}")
    store = stores.create_store(users.normalise_login(args.owner), args.name, args.currency, wallet=args.wallet)
    print(store.store_id)


def _list_stores(args: argparse.Namespace) -> None:
    for store in stores.stores_of(users.normalise_login(args.owner)):
        wallet = "wallet set" if store.wallet else "no wallet"
        print(f"{store.store_id}\t{store.name}\t{store.default_currency}\t{wallet}")


def _create_pairing_code(args: argparse.Namespace) -> None:
    if stores.get_store(args.store) is None:
        raise ApiError(f"no store with id {args.store}")
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

    command = commands.add_parser("create-pairing-code", help="a code a client claims with POST /tokens")
    command.add_argument("--store", required=True)
    command.add_argument("--facade", choices=tokens.PAIRABLE_FACADES, default="merchant")
    command.add_argument("--label")
    key = command.add_mutually_exclusive_group()
    key.add_argument("--public-key", help="restrict the code to this client key (hex)")
    key.add_argument("--sin", help="restrict the code to this client id")
    command.set_defaults(run=_create_pairing_code)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (ApiError, identity.InvalidKey) as error:
        print(f"error: {getattr(error, 'message', error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
