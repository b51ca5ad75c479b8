"""The administration CLI against a deployed stack or `make run`'s storage: `python -m deploy.admin ...`.

    python -m deploy.admin --stack paylambda-prod create-user alice --admin
    python -m deploy.admin --local list-stores --owner admin

The stack's outputs name its tables; chalicelib/cli.py reads them from the
same *_TABLE variables the functions get, and talks to DynamoDB with your AWS
credentials, in the stack's region. `--local` needs no AWS account: it talks to
the local DynamoDB `make run` serves (LOCAL_DYNAMODB_PORT, 8001), as its stage.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.models import ALL_MODELS
from scripts.local_chain import NETWORK as LOCAL_NETWORK

from .template import table_logical_id

ROOT = Path(__file__).resolve().parent.parent


def stack_environment(stack_name: str, session: boto3.session.Session) -> dict[str, str]:
    """The *_TABLE variables of the stack's functions (its outputs) and its network (wallets are checked against it)."""
    stack = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    parameters = {parameter["ParameterKey"]: parameter["ParameterValue"] for parameter in stack.get("Parameters", [])}
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
    environment = {}
    for model in ALL_MODELS:
        output = table_logical_id(model)
        if output not in outputs:
            raise SystemExit(f"stack {stack_name} has no {output} output: deploy this version first (make deploy)")
        environment[model.Meta.table_name_variable] = outputs[output]
    # Stacks made before the parameter existed ran on the network the prod stage had, mainnet.
    environment["BITCOIN_NETWORK"] = parameters.get("BitcoinNetwork", "main")
    return environment


def local_environment() -> dict[str, str]:
    """What scripts/run_local.py gives the service: its DynamoDB, its stage, and credentials for it alone."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environment.setdefault("BITCOIN_NETWORK", LOCAL_NETWORK)
    environment.update(
        DYNAMODB_ENDPOINT=f"http://127.0.0.1:{os.environ.get('LOCAL_DYNAMODB_PORT', '8001')}",
        STAGE="local",
        # moto accepts any; the real ones (and a profile, a session token) never go to a local server.
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    return environment


def _stack_environment(stack: str, region: str | None) -> dict[str, str]:
    session = boto3.session.Session(region_name=region)
    if session.region_name is None:
        raise SystemExit("error: no AWS region: pass --region or set AWS_REGION")
    try:
        environment = {**os.environ, **stack_environment(stack, session)}
    except (BotoCoreError, ClientError) as error:
        raise SystemExit(f"error: cannot read the stack {stack}: {error}") from None
    environment.update(AWS_REGION=session.region_name, AWS_DEFAULT_REGION=session.region_name)
    # A local DynamoDB left in the environment must not receive the stack's data.
    environment.pop("DYNAMODB_ENDPOINT", None)
    return environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.admin", description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--stack", help="the CloudFormation stack (make deploy: paylambda-STAGE)")
    target.add_argument("--local", action="store_true", help="make run's storage (it must be running)")
    parser.add_argument("--region", help="the stack's region (default: your AWS configuration's)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="a chalicelib.cli command and its arguments")
    args = parser.parse_args(argv)
    environment = local_environment() if args.local else _stack_environment(args.stack, args.region)
    return subprocess.call([sys.executable, "-m", "chalicelib.cli", *args.command], env=environment, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
