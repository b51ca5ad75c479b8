"""The administration CLI against a deployed stack: `python -m deploy.admin --stack NAME COMMAND ...`.

    python -m deploy.admin --stack paylambda-prod create-user alice --admin

The stack's outputs name its tables; chalicelib/cli.py reads them from the
same *_TABLE variables the functions get, and talks to DynamoDB with your AWS
credentials, in the stack's region.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import boto3

from chalicelib.models import ALL_MODELS

from .template import table_logical_id

ROOT = Path(__file__).resolve().parent.parent


def stack_environment(stack_name: str, session: boto3.session.Session) -> dict[str, str]:
    """The *_TABLE variables of the stack's functions, from its outputs."""
    stack = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
    environment = {}
    for model in ALL_MODELS:
        output = table_logical_id(model)
        if output not in outputs:
            raise SystemExit(f"stack {stack_name} has no {output} output: deploy this version first (make deploy)")
        environment[model.Meta.table_name_variable] = outputs[output]
    return environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.admin", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="the CloudFormation stack (make deploy: paylambda-STAGE)")
    parser.add_argument("--region", help="the stack's region (default: your AWS configuration's)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="a chalicelib.cli command and its arguments")
    args = parser.parse_args(argv)
    session = boto3.session.Session(region_name=args.region)
    if session.region_name is None:
        raise SystemExit("no AWS region: pass --region or set AWS_REGION")
    environment = {**os.environ, **stack_environment(args.stack, session)}
    environment.update(AWS_REGION=session.region_name, AWS_DEFAULT_REGION=session.region_name)
    # A local DynamoDB left in the environment must not receive the stack's data.
    environment.pop("DYNAMODB_ENDPOINT", None)
    return subprocess.call([sys.executable, "-m", "chalicelib.cli", *args.command], env=environment, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
