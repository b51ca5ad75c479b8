"""The deployment, checked offline: the packaged template and bundle that `make deploy` uploads.

The app is packaged once per session exactly as `make package` does
(Chalice downloads the Linux wheels from PyPI). The template is linted, and
compared with the pynamodb models and with the DynamoDB calls the API really
makes; the bundle is unpacked and run on the oldest botocore it supports.
"""

import json
import os
import subprocess
import sys
import uuid
import zipfile
from importlib.util import MAGIC_NUMBER, cache_from_source
from pathlib import Path

import botocore
import pytest

from deploy.package import OLDEST_BOTOCORE, ROOT, build
from tests.lambda_events import DEPLOYMENTS, LambdaClient, proxy_event

MAX_BUNDLE_BYTES = 5_000_000
# What a Lambda Python runtime has besides the standard library: none of it may be bundled.
RUNTIME_PACKAGES = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py"}
ITEM_LEVEL_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",
}


@pytest.fixture(scope="session")
def package(tmp_path_factory) -> Path:
    return build("prod", tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def template(package) -> dict:
    return json.loads((package / "sam.json").read_text())


def _resources(template: dict, resource_type: str) -> dict[str, dict]:
    return {name: resource for name, resource in template["Resources"].items() if resource["Type"] == resource_type}


def _functions(template: dict) -> dict[str, dict]:
    functions = _resources(template, "AWS::Serverless::Function")
    assert functions
    return functions


def _model_tables(template: dict) -> dict[str, type]:
    """Template table resource -> model, through the variable every function reads the table's name from."""
    from chalicelib.models import ALL_MODELS

    tables = {}
    for model in ALL_MODELS:
        variable = model.Meta.table_name_variable
        references = {
            name: function["Properties"]["Environment"]["Variables"].get(variable)
            for name, function in _functions(template).items()
        }
        assert all(isinstance(ref, dict) and set(ref) == {"Ref"} for ref in references.values()), references
        (table_id,) = {ref["Ref"] for ref in references.values()}
        tables[table_id] = model
    return tables


def _key_schema(attributes) -> list[dict]:
    keys = [{"AttributeName": a.attr_name, "KeyType": "HASH"} for a in attributes if a.is_hash_key]
    return keys + [{"AttributeName": a.attr_name, "KeyType": "RANGE"} for a in attributes if a.is_range_key]


def _expected_index(index) -> dict:
    projection = {"ProjectionType": index.Meta.projection.projection_type}
    if index.Meta.projection.non_key_attributes:
        projection["NonKeyAttributes"] = index.Meta.projection.non_key_attributes
    return {
        "IndexName": index.Meta.index_name,
        "KeySchema": _key_schema(index.Meta.attributes.values()),
        "Projection": projection,
    }


def _indexes(model) -> list:
    from pynamodb.indexes import Index

    return [value for value in vars(model).values() if isinstance(value, Index)]


def _expected_properties(model) -> dict:
    from pynamodb.attributes import TTLAttribute
    from pynamodb.indexes import GlobalSecondaryIndex, LocalSecondaryIndex

    attributes = list(model.get_attributes().values())
    indexes = _indexes(model)
    key_attributes = [a for a in attributes if a.is_hash_key or a.is_range_key]
    key_attributes += [a for index in indexes for a in index.Meta.attributes.values()]
    ttl = [a.attr_name for a in attributes if isinstance(a, TTLAttribute)]
    return {
        "KeySchema": _key_schema(attributes),
        "AttributeDefinitions": {a.attr_name: a.attr_type for a in key_attributes},
        "GlobalSecondaryIndexes": [_expected_index(i) for i in indexes if isinstance(i, GlobalSecondaryIndex)],
        "LocalSecondaryIndexes": [_expected_index(i) for i in indexes if isinstance(i, LocalSecondaryIndex)],
        "TimeToLiveSpecification": {"AttributeName": ttl[0], "Enabled": True} if ttl else None,
    }


def test_the_packaged_template_passes_cfn_lint(package):
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(package / "sam.json", config=ManualArgs(regions=["us-east-1", "eu-west-1"]))

    assert [str(match) for match in matches if match.rule.id.startswith("E")] == []


def test_the_lambda_runtime_is_the_packaging_interpreter(template):
    runtime = f"python{sys.version_info.major}.{sys.version_info.minor}"

    assert {function["Properties"]["Runtime"] for function in _functions(template).values()} == {runtime}


def test_every_model_is_a_table_named_in_every_function(template):
    tables = _model_tables(template)

    assert set(_resources(template, "AWS::DynamoDB::Table")) == set(tables)
    for table_id, model in tables.items():
        table = template["Resources"][table_id]
        properties = table["Properties"]
        expected = _expected_properties(model)
        assert properties["KeySchema"] == expected["KeySchema"], model
        definitions = {d["AttributeName"]: d["AttributeType"] for d in properties["AttributeDefinitions"]}
        assert definitions == expected["AttributeDefinitions"], model
        for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            by_name = sorted(properties.get(kind, []), key=lambda index: index["IndexName"])
            assert by_name == sorted(expected[kind], key=lambda index: index["IndexName"]), (model, kind)
        assert properties.get("TimeToLiveSpecification") == expected["TimeToLiveSpecification"], model
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert properties["SSESpecification"] == {"SSEEnabled": True}
        assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")


def _policy_documents(template: dict, role_id: str) -> list[dict]:
    role = template["Resources"][role_id]
    documents = [policy["PolicyDocument"] for policy in role["Properties"].get("Policies", [])]
    for policy in _resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            documents.append(policy["Properties"]["PolicyDocument"])
    return documents


def _dynamodb_target(resource, tables: dict[str, type]) -> tuple[str, str | None]:
    """A policy resource as (table resource, index name or None); anything else fails the test."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource and resource["Fn::GetAtt"][1] == "Arn":
        assert resource["Fn::GetAtt"][0] in tables, resource
        return resource["Fn::GetAtt"][0], None
    if isinstance(resource, dict) and "Fn::Sub" in resource and isinstance(resource["Fn::Sub"], str):
        prefix, _, index_name = resource["Fn::Sub"].partition("/index/")
        table_id = prefix.removeprefix("${").removesuffix(".Arn}")
        assert prefix == "${" + table_id + ".Arn}" and table_id in tables, resource
        assert index_name in {index.Meta.index_name for index in _indexes(tables[table_id])}, resource
        return table_id, index_name
    raise AssertionError(f"not a model's table or index: {resource}")


def _grants(template: dict, function_id: str) -> set[tuple[str, str, str | None]]:
    """(action, table resource, index name) for every DynamoDB permission of the function's role."""
    tables = _model_tables(template)
    role_id = template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    grants = set()
    for document in _policy_documents(template, role_id):
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            assert not any(action == "*" or action.endswith(":*") for action in actions), actions
            if not any(action.startswith("dynamodb:") for action in actions):
                continue
            assert set(actions) <= ITEM_LEVEL_ACTIONS, actions
            for resource in statement["Resource"]:
                table_id, index_name = _dynamodb_target(resource, tables)
                grants |= {(action, table_id, index_name) for action in actions}
    return grants


def test_each_function_may_use_only_the_models_tables_and_indexes_item_by_item(template):
    for function_id in _functions(template):
        assert _grants(template, function_id)


@pytest.fixture
def dynamodb_calls(monkeypatch):
    from pynamodb.connection.base import Connection

    calls = []
    dispatch = Connection.dispatch

    def recording_dispatch(self, operation_name, operation_kwargs):
        calls.append((operation_name, operation_kwargs["TableName"], operation_kwargs.get("IndexName")))
        return dispatch(self, operation_name, operation_kwargs)

    monkeypatch.setattr(Connection, "dispatch", recording_dispatch)
    return calls


def test_the_api_handler_policy_allows_every_call_the_api_makes(template, chalice_app, store, dynamodb_calls):
    from chalicelib import tokens

    client = LambdaClient(chalice_app, DEPLOYMENTS[0])
    merchant_token = client.claim(tokens.create_pairing_code(store.store_id, "merchant").pairing_code)
    payload = {"price": 5, "currency": "USD", "token": merchant_token, "orderId": "o-1", "itemCode": "mug"}
    status, created = client.request("POST", "/invoices", payload=payload)
    assert status == 200, created
    invoice_id = created["data"]["id"]
    for resource, parameters, query in [
        ("/invoices/{invoice_id}", {"invoice_id": invoice_id}, [("token", merchant_token)]),
        ("/invoices", None, [("status", "new"), ("token", merchant_token)]),
        ("/invoices", None, [("orderId", "o-1"), ("token", merchant_token)]),
        ("/invoices", None, [("itemCode", "mug"), ("token", merchant_token)]),
        ("/tokens", None, None),
    ]:
        status, body = client.request("GET", resource, parameters, query=query)
        assert status == 200, (resource, body)
    requester = LambdaClient(chalice_app, DEPLOYMENTS[0])
    status, body = requester.request("POST", "/tokens", payload={"id": requester.sin, "facade": "pos"})
    assert status == 200, body

    table_ids = {model.Meta.table_name: table_id for table_id, model in _model_tables(template).items()}
    granted = _grants(template, "APIHandler")
    called = {(f"dynamodb:{operation}", table_ids[table], index) for operation, table, index in dynamodb_calls}
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:Query"} <= {c[0] for c in called}
    assert called - granted == set()


def _bundle_files(package: Path) -> list[str]:
    with zipfile.ZipFile(package / "deployment.zip") as bundle:
        return bundle.namelist()


def test_the_bundle_is_small_and_leaves_botocore_to_the_runtime(package):
    files = _bundle_files(package)
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"

    assert (package / "deployment.zip").stat().st_size <= MAX_BUNDLE_BYTES
    assert {name.split("/")[0] for name in files} & RUNTIME_PACKAGES == set()
    assert "pynamodb/models.py" in files
    assert f"coincurve/_libsecp256k1.{tag}-x86_64-linux-gnu.so" in files


def test_the_bundle_carries_bytecode_lambda_can_use(package):
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    with zipfile.ZipFile(package / "deployment.zip") as bundle:
        compiled = {cache_from_source(name) for name in bundle.namelist() if name.endswith(".py")}
        assert compiled <= set(bundle.namelist())
        headers = {bundle.read(name)[:8] for name in compiled}

    for source in ("app.py", "chalice/app.py", "chalicelib/models.py", "pynamodb/models.py", "coincurve/keys.py"):
        assert cache_from_source(source).endswith(f".{tag}.pyc") and cache_from_source(source) in compiled
    # This interpreter's magic number, and flags 0b01: hash-based, never checked against the
    # source, so valid whatever timestamps the zip gives the sources.
    assert headers == {MAGIC_NUMBER + (0b01).to_bytes(4, "little")}


def test_the_development_botocore_is_a_supported_one():
    installed = tuple(int(part) for part in botocore.__version__.split(".")[:3])

    assert installed >= tuple(int(part) for part in OLDEST_BOTOCORE.split("."))
    assert installed[0] == 1


_RUN_IN_BUNDLE = """
import json, sys
import botocore, pynamodb
import app
event = json.load(sys.stdin)
response = app.app(event, None)
print(json.dumps({"botocore": [botocore.__version__, botocore.__file__], "pynamodb": pynamodb.__file__,
                  "status": response["statusCode"], "body": json.loads(response["body"])}))
"""


def test_the_bundle_serves_requests_on_the_oldest_supported_botocore(package, tmp_path, dynamodb):
    from bitpay import key_utils

    from chalicelib import tokens

    bundle, runtime = tmp_path / "task", tmp_path / "runtime"
    with zipfile.ZipFile(package / "deployment.zip") as archive:
        archive.extractall(bundle)
    pip_install = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    subprocess.run([*pip_install, "--target", str(runtime), f"botocore=={OLDEST_BOTOCORE}"], check=True)
    sin = key_utils.get_sin_from_pem(key_utils.generate_pem())
    event = proxy_event(DEPLOYMENTS[0], "POST", "/tokens", body=json.dumps({"id": sin, "facade": "merchant"}))

    # -I -S: no site-packages and no PYTHONPATH, only the bundle and what the runtime provides; -B: read-only.
    script = f"import sys; sys.path[:0] = [{str(bundle)!r}, {str(runtime)!r}]\n" + _RUN_IN_BUNDLE
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", script], input=json.dumps(event), capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout)
    assert served["botocore"] == [OLDEST_BOTOCORE, str(runtime / "botocore" / "__init__.py")]
    assert served["pynamodb"] == str(bundle / "pynamodb" / "__init__.py")
    assert served["status"] == 200, served["body"]
    pairing_code = served["body"]["data"][0]["pairingCode"]
    assert tokens.find_pairing(pairing_code).sin == sin


def test_the_cli_administers_a_stack_through_its_outputs(template, dynamodb):
    import boto3

    # The stack's tables, created by moto's CloudFormation (it has no SAM transform for the rest).
    tables = _resources(template, "AWS::DynamoDB::Table")
    stack_name = f"paylambda-{uuid.uuid4().hex[:8]}"
    stack = {"Resources": tables, "Outputs": {name: template["Outputs"][name] for name in tables}}
    boto3.client("cloudformation", endpoint_url=dynamodb).create_stack(
        StackName=stack_name, TemplateBody=json.dumps(stack)
    )

    result = subprocess.run(
        [sys.executable, "-m", "deploy.admin", "--stack", stack_name, "create-user", "Alice", "--admin"],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        # AWS is moto here; a stale local DynamoDB setting must not divert the stack's data.
        env={**os.environ, "AWS_ENDPOINT_URL": dynamodb, "DYNAMODB_ENDPOINT": "http://127.0.0.1:9"},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "created user alice"
    user = boto3.client("dynamodb", endpoint_url=dynamodb).get_item(
        TableName=f"{stack_name}-users", Key={"login": {"S": "alice"}}
    )["Item"]
    assert user["is_admin"] == {"BOOL": True}
