"""The deployment, checked offline: the packaged template and bundle that `make deploy` uploads.

The app is packaged once per session exactly as `make package` does
(Chalice downloads the Linux wheels from PyPI), then `make changeset` runs the
real AWS CLI against moto's server: the artifacts bucket, the upload and a
change set for the whole template. The template is linted as SAM and as the
CloudFormation SAM expands it to, and compared with the pynamodb models, with the notification queue the consumer
reads, and with the DynamoDB and SQS calls each function's handler really
makes (recorded while the API, the watcher and the consumer run against moto);
the bundle is unpacked and each function run from it as Lambda runs it, the
API on the oldest botocore it supports.
"""

import json
import os
import re
import subprocess
import sys
import threading
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib.util import MAGIC_NUMBER, cache_from_source
from pathlib import Path

import botocore
import pytest
from embit.bip32 import HDKey
from embit.networks import NETWORKS

from chalicelib.messaging import notifications
from chalicelib.security import sessions, tokens
from deploy.package import OLDEST_BOTOCORE, ROOT, build
from deploy.template import FUNCTION_ACCESS, SEND_EMAIL
from tests.api_fixtures import root_only
from tests.conftest import MOTO_PORT, PASSWORD, new_wallet
from tests.lambda_events import DEPLOYMENTS, LambdaClient, LambdaContext, proxy_event, sqs_event
from tests.pages_support import browser, fresh_address, post_form, sign_in, signed_in
from tests.payments_support import HOUR, SCHEDULED_EVENT, run_watcher_handlers, sats

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
QUEUE_ACTIONS = {
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
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


# What the pinned AWS CLI (requirements-dev.txt) runs as; moto finds a template uploaded to itself by this host name.
AWS_CLI = str(Path(sys.executable).parent / "aws")
ACCOUNT = "123456789012"
# A value for every stack parameter `make deploy` passes when it is given (the Makefile's STACK_PARAMETERS).
MAKE_PARAMETERS = {
    "DOMAIN_NAME": ("DomainName", "pay.example.com"),
    "CERTIFICATE_ARN": ("CertificateArn", f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/0000"),
    "BASE_PATH": ("BasePath", "bitpay"),
    "PUBLIC_BASE_URL": ("PublicBaseUrl", "https://shop.example.com"),
    "LOG_RETENTION_DAYS": ("LogRetentionDays", "90"),
    "ALARM_EMAIL": ("AlarmEmail", "ops@shop.example.com"),
    "MONTHLY_BUDGET": ("MonthlyBudget", "25"),
    "API_RATE_LIMIT": ("ApiRateLimit", "20"),
    "API_BURST_LIMIT": ("ApiBurstLimit", "40"),
    "NOTIFICATION_CONCURRENCY": ("NotificationConcurrency", "3"),
    "RESERVE_WATCHER_CONCURRENCY": ("ReserveWatcherConcurrency", "false"),
    "ENABLE_WEB_ACL": ("EnableWebAcl", "true"),
    "WAF_AUTH_REQUESTS_PER_IP": ("WafAuthRequestsPerIp", "50"),
    "WAF_INVOICE_REQUESTS_PER_IP": ("WafInvoiceRequestsPerIp", "1000"),
    "ENABLE_BACKUPS": ("EnableBackups", "true"),
    "BACKUP_COPY_VAULT_ARN": ("BackupCopyVaultArn", f"arn:aws:backup:eu-west-1:{ACCOUNT}:backup-vault:copies"),
    "ENABLE_TRACING": ("EnableTracing", "true"),
    "ENABLE_ACCESS_LOGS": ("EnableAccessLogs", "true"),
    "API_FRONT": ("ApiFront", "rest"),
    "EMAIL_SENDER": ("EmailSender", "payments@shop.example.com"),
    "BITCOIN_NETWORK": ("BitcoinNetwork", "test"),
    "ESPLORA_URL": ("EsploraUrl", "https://electrs.shop.example.com"),
    "ESPLORA_CONCURRENCY": ("EsploraConcurrency", "8"),
    "ESPLORA_RATE_LIMIT": ("EsploraRateLimit", "20"),
    "CHECK_CONCURRENCY": ("CheckConcurrency", "4"),
    "MONITORING_WINDOW_SECONDS": ("MonitoringWindowSeconds", "43200"),
    "PAYMENT_TOLERANCE_PERCENT": ("PaymentTolerancePercent", "0.5"),
}


def _make(*arguments: str, environment: dict | None = None) -> subprocess.CompletedProcess:
    # -o package: the session's package stands for `make package` (built the same way, once).
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "package", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(environment or {})},
    )


@pytest.fixture(scope="session")
def change_set(package, dynamodb) -> dict:
    """`make changeset` against moto: the bucket, the upload and the change set, as `make deploy` makes them."""
    import boto3

    endpoint = f"http://localhost:{MOTO_PORT}"
    parameters = [f"{variable}={value}" for variable, (_, value) in MAKE_PARAMETERS.items()]
    result = _make(
        "changeset",
        # The package's stage (the suite's own STAGE is in the environment).
        "STAGE=prod",
        f"AWS={AWS_CLI}",
        f"DIST={package.parent}",
        *parameters,
        environment={"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [arn] = re.findall(r"--change-set-name (arn:\S+)", result.stdout)
    cloudformation = boto3.client("cloudformation", endpoint_url=endpoint)
    return {
        "change_set": cloudformation.describe_change_set(ChangeSetName=arn),
        "bucket": f"paylambda-prod-artifacts-{ACCOUNT}-us-east-1",
        "packaged": package.parent / "packaged.yaml",
        "s3": boto3.client("s3", endpoint_url=endpoint),
    }


@pytest.fixture(scope="session")
def packaged_template(change_set) -> dict:
    """The template CloudFormation receives: `aws cloudformation package` wrote the code's S3 location in."""
    import yaml

    return yaml.safe_load(change_set["packaged"].read_text())


def test_make_changeset_uploads_the_code_and_template_to_a_versioned_bucket(change_set, package, packaged_template):
    s3, bucket = change_set["s3"], change_set["bucket"]

    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    uploaded = {item["Key"]: item["Size"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    code_uris = {function["Properties"]["CodeUri"] for function in _functions(packaged_template).values()}
    [code_uri] = code_uris
    code_key = code_uri.removeprefix(f"s3://{bucket}/")
    assert code_key.startswith("code/")
    assert uploaded[code_key] == (package / "deployment.zip").stat().st_size
    [template_key] = [key for key in uploaded if key.startswith("templates/")]
    # Over the 51,200 bytes an inline template may have: only the upload lets it through.
    assert uploaded[template_key] == change_set["packaged"].stat().st_size > 51_200
    # CloudFormation's limit for a template read from S3.
    assert uploaded[template_key] <= 1_000_000


def test_make_changeset_creates_a_change_set_for_every_resource_with_the_parameters_given(
    change_set, packaged_template
):
    described = change_set["change_set"]

    assert described["Status"] == "CREATE_COMPLETE", described.get("StatusReason")
    assert described["StackName"] == "paylambda-prod"
    given = {name: value for name, value in MAKE_PARAMETERS.values()}
    assert {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]} == given
    # `make` can set every parameter, and each is one the template declares (the CLI drops unknown ones silently).
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    [pairs] = re.findall(r"^STACK_PARAMETERS = (.*)$", makefile, re.MULTILINE)
    assert dict(pair.split(":") for pair in pairs.split()) == {var: name for var, (name, _) in MAKE_PARAMETERS.items()}
    assert set(given) == set(packaged_template["Parameters"])
    changed = {change["ResourceChange"]["LogicalResourceId"] for change in described["Changes"]}
    assert changed == set(packaged_template["Resources"])


def test_make_deploy_checks_the_bucket_owner_and_protects_the_stack():
    result = _make("-n", "deploy", "STAGE=prod", f"ACCOUNT={ACCOUNT}", "REGION=us-east-1", "AWS=aws")
    commands = [line for line in re.sub(r"\\\n\s*", " ", result.stdout).splitlines() if line.startswith("aws ")]

    assert result.returncode == 0, result.stderr
    s3api = [command for command in commands if command.startswith("aws s3api")]
    assert s3api and all(f"--expected-bucket-owner {ACCOUNT}" in command for command in s3api)
    assert any("put-bucket-versioning" in command and "Status=Enabled" in command for command in s3api)
    [deploy] = [i for i, command in enumerate(commands) if command.startswith("aws cloudformation deploy")]
    assert "--s3-bucket paylambda-prod-artifacts-123456789012-us-east-1" in commands[deploy]
    assert "update-termination-protection" in commands[deploy + 1]
    assert "--enable-termination-protection" in commands[deploy + 1]


def _lint(path: Path) -> list[str]:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(path, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    return [str(match) for match in matches if match.rule.id[0] in "EW"]


def test_the_packaged_template_passes_cfn_lint(package):
    assert _lint(package / "sam.json") == []


def test_the_template_sam_expands_to_passes_cfn_lint(packaged_template, tmp_path, monkeypatch):
    """What CloudFormation deploys is SAM's expansion: a dependency cycle or a bad property shows only there."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        # The template names no AWS managed policy; offline there is no IAM to list them from.
        def load(self):
            return {}

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    expanded = transform(packaged_template, {}, NoManagedPolicies())
    assert "Transform" not in expanded
    assert not [r for r in expanded["Resources"].values() if r["Type"].startswith("AWS::Serverless::")]
    path = tmp_path / "expanded.json"
    path.write_text(json.dumps(expanded))

    assert _lint(path) == []


def test_the_lambda_runtime_is_the_packaging_interpreter(template):
    runtime = f"python{sys.version_info.major}.{sys.version_info.minor}"

    assert {function["Properties"]["Runtime"] for function in _functions(template).values()} == {runtime}


def test_the_packaged_api_has_no_test_chain_route_and_no_function_knows_a_local_chain(template):
    """The checkout's test-chain buttons are make run's alone (tests/test_local_chain.py): never packaged."""
    [api] = _resources(template, "AWS::Serverless::Api").values()
    paths = api["Properties"]["DefinitionBody"]["paths"]
    assert "/invoice/status" in paths and not [path for path in paths if "test-chain" in path]
    for function in _functions(template).values():
        assert "LOCAL_CHAIN_URL" not in function["Properties"]["Environment"]["Variables"]


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
        # Kept when the stack goes or the table would be replaced; only a failed first creation removes it.
        assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
        assert properties["DeletionProtectionEnabled"] is True


def _when_enabled(value):
    """A value as it is with every option on: the first branch of an Fn::If."""
    return value["Fn::If"][1] if isinstance(value, dict) and "Fn::If" in value else value


def _policy_documents(template: dict, role_id: str) -> list[dict]:
    role = template["Resources"][role_id]
    documents = [_when_enabled(policy)["PolicyDocument"] for policy in role["Properties"].get("Policies", [])]
    for policy in _resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            documents.append(policy["Properties"]["PolicyDocument"])
    return documents


def _queues(template: dict) -> tuple[str, str]:
    """(notification queue, its dead-letter queue): the template's queues besides the checks queue."""
    queues = _resources(template, "AWS::SQS::Queue")
    (queue_id,) = [name for name, queue in queues.items() if "RedrivePolicy" in queue["Properties"]]
    redrive = queues[queue_id]["Properties"]["RedrivePolicy"]
    dead_letter_id = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert set(queues) == {queue_id, dead_letter_id, _checks_queue(template)}
    return queue_id, dead_letter_id


def _checks_queue(template: dict) -> str:
    """The watcher's checks queue: the one every function is given as CHECKS_QUEUE_URL."""
    (reference,) = {
        json.dumps(function["Properties"]["Environment"]["Variables"]["CHECKS_QUEUE_URL"])
        for function in _functions(template).values()
    }
    queue_id = json.loads(reference)["Ref"]
    assert template["Resources"][queue_id]["Type"] == "AWS::SQS::Queue"
    return queue_id


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
    """(action, resource, index name) for every DynamoDB and SQS permission of the function's role.

    The resource is a model's table (or index) or one of the two queues; any other
    resource, or a permission for another service, fails the test.
    """
    tables = _model_tables(template)
    queue_ids = (_queues(template)[0], _checks_queue(template))
    role_id = template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    grants = set()
    for document in _policy_documents(template, role_id):
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            assert not any(action == "*" or action.endswith(":*") for action in actions), actions
            (service,) = {action.split(":")[0] for action in actions}
            if service == "logs":
                # Its own log group only, which the stack creates.
                assert set(actions) == {"logs:CreateLogStream", "logs:PutLogEvents"}
                assert statement["Resource"] == [{"Fn::GetAtt": [f"{function_id}LogGroup", "Arn"]}]
                continue
            if service == "xray":
                # With EnableTracing: what Lambda's active tracing sends (X-Ray has no resources to name).
                assert set(actions) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
                continue
            if service == "ses":
                # Sending as the stack's EmailSender only.
                assert statement == SEND_EMAIL, statement
                grants.add(("ses:SendEmail", None, None))
                continue
            assert service in ("dynamodb", "sqs"), actions
            assert set(actions) <= (ITEM_LEVEL_ACTIONS if service == "dynamodb" else QUEUE_ACTIONS), actions
            for resource in statement["Resource"]:
                if service == "sqs":
                    assert resource in [{"Fn::GetAtt": [queue_id, "Arn"]} for queue_id in queue_ids], resource
                    target = (resource["Fn::GetAtt"][0], None)
                else:
                    target = _dynamodb_target(resource, tables)
                grants |= {(action, *target) for action in actions}
    return grants


def _consumer(template: dict, queue_name: str = "paylambda-prod-notifications") -> tuple[str, dict]:
    """The function an SQS event source invokes for the queue, and that event source."""
    arn = "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + queue_name
    [(function_id, event)] = [
        (function_id, event)
        for function_id, function in _functions(template).items()
        for event in function["Properties"].get("Events", {}).values()
        if event["Type"] == "SQS" and event["Properties"]["Queue"] == {"Fn::Sub": arn}
    ]
    return function_id, event


def test_each_function_may_use_only_the_models_tables_and_indexes_and_the_queue(template):
    queue_id, _ = _queues(template)
    checks_id = _checks_queue(template)
    consumer_actions = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    for function_id in _functions(template):
        grants = _grants(template, function_id)
        assert {grant[0] for grant in grants if grant[0].startswith("dynamodb:")}, function_id
        # All but the planner send notifications (a resend, a change, a retry, a lost one); only the consumer receives.
        assert (("sqs:SendMessage", queue_id, None) in grants) == (function_id != "WatchPayments"), function_id
        receives = {(action, queue_id, None) for action in consumer_actions} <= grants
        assert receives == (function_id == _consumer(template)[0]), function_id
        # The planner queues checks, the checker reads them (and queues the ones to retry).
        assert (("sqs:SendMessage", checks_id, None) in grants) == (function_id in ("WatchPayments", "CheckPayments"))
        receives = {(action, checks_id, None) for action in consumer_actions} <= grants
        assert receives == (function_id == _consumer(template, "paylambda-prod-checks")[0] == "CheckPayments")


def test_all_models_lists_every_model_so_the_template_has_every_table():
    from pynamodb.models import Model

    from chalicelib import models

    defined = {value for value in vars(models).values() if isinstance(value, type) and issubclass(value, Model)}
    # SharedConnectionModel is the tables' base class (the one shared client), not a table.
    assert defined - {Model, models.SharedConnectionModel} == set(models.ALL_MODELS)
    assert {"NotificationModel", "SessionModel", "LimitModel"} <= {m.__name__ for m in models.ALL_MODELS}


def test_the_consumer_reads_the_queue_every_function_sends_to(template):
    from chalicelib.messaging.notifications import LEASE_MS, RETRY_DELAYS_MINUTES

    queue_id, dead_letter_id = _queues(template)
    queue = template["Resources"][queue_id]["Properties"]
    dead_letters = template["Resources"][dead_letter_id]["Properties"]
    consumer_id, event = _consumer(template)
    consumer_timeout = _functions(template)[consumer_id]["Properties"]["Timeout"]

    # Chalice names the queue in an ARN; the stack's queue has that very name.
    assert queue["QueueName"] == "paylambda-prod-notifications"
    assert event["Properties"]["Queue"] == {
        "Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:paylambda-prod-notifications"
    }
    assert event["Properties"]["BatchSize"] == 1
    assert _resources(template, "AWS::SQS::Queue")[_checks_queue(template)]["Properties"]["QueueName"] == (
        "paylambda-prod-checks"
    )
    for function in _functions(template).values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["NOTIFICATIONS_QUEUE_URL"] == {"Ref": queue_id}
        assert variables["NOTIFICATIONS_QUEUE"] == {"Fn::GetAtt": [queue_id, "QueueName"]}
    # AWS: at least six times the consumer's timeout, or a message still being handled comes back.
    assert queue["VisibilityTimeout"] >= 6 * consumer_timeout
    # A consumer still running never outlives its claim on a notification.
    assert consumer_timeout * 1000 < LEASE_MS
    assert queue["RedrivePolicy"]["maxReceiveCount"] in range(1, 11)
    assert queue["MessageRetentionPeriod"] > sum(RETRY_DELAYS_MINUTES) * 60
    assert dead_letters["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert queue["SqsManagedSseEnabled"] is dead_letters["SqsManagedSseEnabled"] is True
    assert template["Outputs"]["NotificationsDeadLetterQueueUrl"]["Value"] == {"Ref": dead_letter_id}


def test_the_planner_runs_alone_every_minute_and_the_checkers_report_each_message(template):
    from chalicelib import jobs
    from chalicelib.payments import watcher

    functions = _functions(template)
    planner = functions["WatchPayments"]["Properties"]
    [schedule] = planner["Events"].values()
    assert schedule["Properties"]["Schedule"] == "rate(1 minute)"
    assert watcher.RUN_INTERVAL_MS == 60_000
    # Runs never overlap nor are retried (test_consumers_and_the_watcher_cannot_multiply): the next one plans anew.
    assert _when_enabled(planner["ReservedConcurrentExecutions"]) == 1
    checker_id, event = _consumer(template, "paylambda-prod-checks")
    assert checker_id == "CheckPayments"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "CheckConcurrency"}}
    assert event["Properties"]["BatchSize"] == jobs.CHECK_MESSAGES_PER_INVOCATION
    checks = template["Resources"][_checks_queue(template)]["Properties"]
    assert checks["VisibilityTimeout"] >= 6 * functions[checker_id]["Properties"]["Timeout"]
    # The sweep has a schedule of its own: lost notifications are found whatever the checks do.
    [sweep] = functions["SweepNotifications"]["Properties"]["Events"].values()
    assert sweep["Properties"]["Schedule"] == "rate(1 minute)"
    for parameter, variable in [
        ("BitcoinNetwork", "BITCOIN_NETWORK"),
        ("EsploraUrl", "ESPLORA_URL"),
        ("EsploraConcurrency", "ESPLORA_CONCURRENCY"),
        ("EsploraRateLimit", "ESPLORA_RATE_LIMIT"),
        ("CheckConcurrency", "CHECK_CONCURRENCY"),
        ("MonitoringWindowSeconds", "MONITORING_WINDOW_SECONDS"),
        ("PaymentTolerancePercent", "PAYMENT_TOLERANCE_PERCENT"),
    ]:
        assert parameter in template["Parameters"]
        for function in functions.values():
            assert function["Properties"]["Environment"]["Variables"][variable] == {"Ref": parameter}


class Merchant:
    """A merchant's BitPay client paired with `store`, calling the API's Lambda handler."""

    def __init__(self, chalice_app, store):
        self.client = LambdaClient(chalice_app, DEPLOYMENTS[0])
        self.token = self.client.claim(tokens.create_pairing_code(store.store_id, "merchant").pairing_code)

    def create_invoice(self, **fields) -> dict:
        payload = {"price": 5, "currency": "USD", "token": self.token, **fields}
        status, created = self.client.request("POST", "/invoices", payload=payload)
        assert status == 200, created
        return created["data"]


# The permission each operation of a DynamoDB transaction needs: the item action it performs.
_TRANSACTION_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _permissions(service: str, operation: str, params: dict, tables: dict, queues: dict) -> list[tuple]:
    """The IAM permissions one AWS call needs, as (action, template resource, index name)."""
    if service == "sqs":
        queue_name = params["QueueName"] if "QueueName" in params else params["QueueUrl"].rsplit("/", 1)[1]
        # IAM has no action of its own for a batch: SendMessage allows SendMessageBatch.
        action = "SendMessage" if operation == "SendMessageBatch" else operation
        return [(f"sqs:{action}", queues.get(queue_name, queue_name), None)]
    if service == "sesv2":
        return [(f"ses:{operation}", None, None)]  # SES v2's API shares SES's IAM actions
    if service != "dynamodb":
        return [(f"{service}:{operation}", None, None)]
    if operation == "TransactWriteItems":
        return [
            (f"dynamodb:{_TRANSACTION_ACTIONS[kind]}", tables.get(item["TableName"], item["TableName"]), None)
            for entry in params["TransactItems"]
            for kind, item in entry.items()
        ]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{operation}", tables.get(name, name), None) for name in params["RequestItems"]]
    table = params["TableName"]
    return [(f"dynamodb:{operation}", tables.get(table, table), params.get("IndexName"))]


@pytest.fixture
def record_calls(template, monkeypatch, notifications_queue, checks_queue):
    """`with record_calls() as calls:` every AWS call made meanwhile, in any thread, as the permission it needs."""
    from botocore.client import BaseClient

    from chalicelib.messaging import notifications
    from chalicelib.payments import watcher
    from chalicelib.settings import get_settings

    tables = {model.Meta.table_name: table_id for table_id, model in _model_tables(template).items()}
    queues = {
        get_settings().notifications_queue: _queues(template)[0],
        get_settings().checks_queue: _checks_queue(template),
    }
    # On AWS the functions are given the queues' URLs (NOTIFICATIONS_QUEUE_URL...); here they are looked up, once.
    notifications._queue_url()
    watcher._checks_queue_url()
    recording = threading.Event()
    calls = []
    make_api_call = BaseClient._make_api_call

    def recording_call(client, operation_name, api_params):
        if recording.is_set():
            service = client.meta.service_model.service_name
            calls.extend(_permissions(service, operation_name, api_params, tables, queues))
        return make_api_call(client, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording_call)

    @contextmanager
    def record():
        calls.clear()
        recording.set()
        try:
            yield calls
        finally:
            recording.clear()

    return record


def _split(calls) -> tuple[set, set]:
    """(DynamoDB permissions, SQS permissions) among `calls`, which call no other service but SES (checked apart)."""
    assert {call[0].split(":")[0] for call in calls} <= {"dynamodb", "sqs", "ses"}, calls
    return {c for c in calls if c[0].startswith("dynamodb:")}, {c for c in calls if c[0].startswith("sqs:")}


@root_only
def test_the_api_handler_policy_allows_exactly_what_the_api_and_pages_call(
    template, chalice_app, api_url, user, store, record_calls
):
    """Every route family through the handler: BitPay clients (signed proxy events) and a browser (pages)."""
    merchant = Merchant(chalice_app, store)
    # As in a new container: the first sign-in reads the device cookies' key.
    sessions.device_key.cache_clear()
    with record_calls() as calls:
        merchant.client.claim(tokens.create_pairing_code(store.store_id, "merchant").pairing_code)
        status, body = merchant.client.request("POST", "/tokens", payload={"facade": "pos", "token": merchant.token})
        assert status == 200, body
        LambdaClient(chalice_app, DEPLOYMENTS[0]).claim(body["data"][0]["pairingCode"])
        invoice = merchant.create_invoice(orderId="o-1", itemCode="mug", notificationURL="https://shop.example/ipn")
        for resource, parameters, query in [
            ("/invoices/{invoice_id}", {"invoice_id": invoice["id"]}, [("token", merchant.token)]),
            ("/invoices", None, [("token", merchant.token)]),
            ("/invoices", None, [("status", "new"), ("token", merchant.token)]),
            ("/invoices", None, [("orderId", "o-1"), ("token", merchant.token)]),
            ("/invoices", None, [("itemCode", "mug"), ("token", merchant.token)]),
            ("/tokens", None, None),
        ]:
            status, body = merchant.client.request("GET", resource, parameters, query=query)
            assert status == 200, (resource, body)
        status, body = merchant.client.request(
            "POST",
            "/invoices/{invoice_id}/notifications",
            {"invoice_id": invoice["id"]},
            payload={"token": merchant.token},
        )
        assert status == 200, body
        requester = LambdaClient(chalice_app, DEPLOYMENTS[0])
        status, body = requester.request("POST", "/tokens", payload={"id": requester.sin, "facade": "pos"})
        assert status == 200, body
        pairing_code = body["data"][0]["pairingCode"]

        address = fresh_address()
        assert sign_in(api_url, user.login, "wrong password", session=browser(address)).status_code == 401
        assert sign_in(api_url, user.login, "wrong again", session=browser(address)).status_code == 401
        elsewhere = signed_in(api_url, user.login)
        session = signed_in(api_url, user.login)
        created = post_form(
            session, f"{api_url}/stores", f"{api_url}/stores", name="Two", default_currency="EUR", wallet=new_wallet()
        )
        assert created.status_code == 303
        two = created.headers["Location"]
        settings = {"name": "Two", "default_currency": "EUR", "invoice_expiration_minutes": "15"}
        changed_wallet = post_form(
            session, two, two, action="save", transaction_speed="medium", wallet=new_wallet(), **settings
        )
        assert changed_wallet.status_code == 303, changed_wallet.text
        assert session.get(f"{api_url}/stores/{store.store_id}/tokens").status_code == 200
        assert session.get(f"{api_url}/stores/{store.store_id}/invoices/{invoice['id']}").status_code == 200
        for search in (invoice["bitcoinAddress"], "buyer@example.com"):
            assert session.get(f"{api_url}/stores/{store.store_id}/invoices", params={"q": search}).status_code == 200
        assert session.get(f"{api_url}/invoice", params={"id": invoice["id"]}).status_code == 200
        pairing_url = f"{api_url}/api-access-request?pairingCode={pairing_code}"
        denied = post_form(
            session, pairing_url, f"{api_url}/api-access-request", pairingCode=pairing_code, decision="deny"
        )
        assert denied.status_code == 200
        changed = post_form(
            session,
            f"{api_url}/account/password",
            f"{api_url}/account/password",
            current_password=PASSWORD,
            new_password=PASSWORD + "!",
            confirmation=PASSWORD + "!",
        )
        assert changed.status_code == 200
        assert elsewhere.get(f"{api_url}/stores", allow_redirects=False).status_code == 303
        tokens_page = f"{api_url}/stores/{store.store_id}/tokens"
        revoke_form = f"{tokens_page}/revoke?token={tokens.reference(tokens.find(merchant.token))}"
        revoked = post_form(
            session, revoke_form, f"{tokens_page}/revoke", token=tokens.reference(tokens.find(merchant.token))
        )
        assert revoked.status_code == 303
        assert post_form(session, f"{api_url}/stores", f"{api_url}/logout").status_code == 303

    dynamodb, sqs = _split(calls)
    granted_dynamodb, granted_sqs = _split(_grants(template, "APIHandler"))
    assert dynamodb == granted_dynamodb
    assert sqs <= granted_sqs and sqs


def test_the_watcher_policies_allow_exactly_what_overlapping_planners_racing_checkers_and_the_sweep_call(
    template, chalice_app, store, chain, record_calls, checks_queue
):
    """Two planner runs at once queue every invoice twice; the two checkers that take the messages race,
    and the loser reads the invoice again (GetItem); an invoice Esplora fails on is queued again; the
    sweep finds a notification whose queue message was lost (UpdateItem on notifications)."""
    from chalicelib import jobs
    from chalicelib.models import NotificationModel

    merchant = Merchant(chalice_app, store)
    lost = merchant.create_invoice(notificationURL="https://shop.example/ipn", transactionSpeed="high")
    chain.pay(lost["bitcoinAddress"], sats(lost))
    run_watcher_handlers(checks_queue, LambdaContext("CheckPayments", 60))
    # As if its queue message were lost an hour ago: the handlers run at the real time, so the
    # notification goes back an hour rather than a clock forward.
    for notification in NotificationModel.query(lost["id"]):
        notification.update([NotificationModel.next_attempt.set(notification.next_attempt - HOUR)])

    invoice = merchant.create_invoice(
        notificationURL="https://shop.example/ipn", fullNotifications=True, transactionSpeed="high"
    )
    chain.pay(invoice["bitcoinAddress"], sats(invoice))
    # Neither checker hears from Esplora until both have read the invoice.
    chain.hold(invoice["bitcoinAddress"], parties=2)
    unanswered = merchant.create_invoice()
    chain.retry_after = "0"
    chain.fail_next(f"/address/{unanswered['bitcoinAddress']}", *[429] * 10)

    with record_calls() as calls, ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(jobs.watch_payments, SCHEDULED_EVENT, LambdaContext("WatchPayments", 60)) for _ in range(2)]
        for run in runs:
            run.result(timeout=30)
    planner_calls = list(calls)
    messages = checks_queue.receive_all()
    # Each plan queued the same messages (one per watch partition holding its invoices): a checker takes each plan's.
    plans = ([], [])
    for message in messages:
        plans[sum(message["Body"] == other["Body"] for other in plans[0])].append(message)
    assert len(plans[0]) == len(plans[1]) >= 1
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:" + checks_queue.url.rsplit("/", 1)[1]
    with record_calls() as calls, ThreadPoolExecutor(max_workers=2) as pool:
        checks = [
            pool.submit(jobs.check_payments, sqs_event(taken, queue_arn), LambdaContext("CheckPayments", 60))
            for taken in plans
        ]
        assert [check.result(timeout=30) for check in checks] == [{"batchItemFailures": []}] * 2
    checker_calls = list(calls)
    for message in messages:
        checks_queue.delete(message)
    with record_calls() as calls:
        jobs.sweep_notifications(SCHEDULED_EVENT, LambdaContext("SweepNotifications", 60))
    sweep_calls = list(calls)

    assert [n["event"]["name"] for n in notifications.history(invoice["id"])] == [
        "invoice_paidInFull",
        "invoice_confirmed",
    ]
    for function_id, made in [
        ("WatchPayments", planner_calls),
        ("CheckPayments", checker_calls),
        ("SweepNotifications", sweep_calls),
    ]:
        dynamodb, sqs = _split(made)
        granted_dynamodb, granted_sqs = _split(_grants(template, function_id))
        assert dynamodb == granted_dynamodb, function_id
        # What Lambda's event source mapping calls with the checker's role is not recorded here.
        sends = {grant for grant in granted_sqs if grant[0] == "sqs:SendMessage"}
        assert sends <= sqs <= granted_sqs and sqs, function_id


def test_the_consumer_policy_allows_exactly_what_a_delivery_calls(
    template, chalice_app, store, chain, ipn_receiver, notifications_queue, checks_queue, record_calls
):
    """A delivery the receiver refuses: the attempt is recorded and the retry queued."""
    from chalicelib import jobs

    merchant = Merchant(chalice_app, store)
    invoice = merchant.create_invoice(notificationURL=f"{ipn_receiver.url}/ipn", transactionSpeed="high")
    chain.pay(invoice["bitcoinAddress"], sats(invoice))
    run_watcher_handlers(checks_queue, LambdaContext("CheckPayments", 60))
    messages = [message for message in notifications_queue.receive_all() if invoice["id"] in message["Body"]]
    ipn_receiver.fail("/ipn", 1)
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:" + notifications_queue.url.rsplit("/", 1)[1]

    with record_calls() as calls:
        jobs.deliver_notifications(sqs_event(messages, queue_arn), LambdaContext("DeliverNotifications", 60))
    for message in messages:
        notifications_queue.delete(message)

    [sent] = notifications.history(invoice["id"])
    assert [attempt["status"] for attempt in sent["attempts"]] == [500]
    assert sent["state"] == "pending"
    assert any(invoice["id"] in message["Body"] for message in notifications_queue.receive_all())
    dynamodb, sqs = _split(calls)
    granted_dynamodb, granted_sqs = _split(_grants(template, "DeliverNotifications"))
    assert dynamodb == granted_dynamodb
    assert sqs == {("sqs:SendMessage", _queues(template)[0], None)} <= granted_sqs


def test_only_the_consumer_may_send_email_and_a_delivery_calls_just_that(
    template, chalice_app, store, chain, ses_outbox, notifications_queue, checks_queue, record_calls
):
    from chalicelib import jobs

    merchant = Merchant(chalice_app, store)
    invoice = merchant.create_invoice(notificationEmail="orders@shop.example")
    chain.pay(invoice["bitcoinAddress"], sats(invoice))
    run_watcher_handlers(checks_queue, LambdaContext("CheckPayments", 60))
    messages = [message for message in notifications_queue.receive_all() if invoice["id"] in message["Body"]]
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:" + notifications_queue.url.rsplit("/", 1)[1]

    with record_calls() as calls:
        jobs.deliver_notifications(sqs_event(messages, queue_arn), LambdaContext("DeliverNotifications", 60))
    for message in messages:
        notifications_queue.delete(message)

    assert [message["destinations"] for message in ses_outbox.sent()] == [{"ToAddresses": ["orders@shop.example"]}]
    ses_grants = {
        function: {g for g in _grants(template, function) if g[0] == "ses:SendEmail"} for function in FUNCTION_ACCESS
    }
    assert ses_grants.pop("DeliverNotifications") == {("ses:SendEmail", None, None)}
    assert all(grants == set() for grants in ses_grants.values()), ses_grants
    assert {call for call in calls if call[0].startswith("ses:")} == {("ses:SendEmail", None, None)}
    assert template["Parameters"]["EmailSender"]["Default"] == ""


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
    # embit's libraries for other platforms stay out; Lambda's own is kept.
    assert [name for name in files if name.startswith("embit/util/prebuilt/")] == [
        "embit/util/prebuilt/libsecp256k1_linux_x86_64.so"
    ]


@pytest.mark.parametrize(
    ("stage", "says"),
    [("local", "the local stage is for make run"), ("qa", "no stage 'qa' in .chalice/config.json")],
)
def test_a_stage_without_a_deployable_configuration_fails_naming_what_is_missing(stage, says):
    result = subprocess.run(
        [sys.executable, "-m", "deploy.package", "--stage", stage, "--out", "/nonexistent"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    assert result.returncode != 0
    assert says in result.stderr
    assert "staging" in result.stderr and "prod" in result.stderr


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


@pytest.fixture(scope="session")
def bundle(package, tmp_path_factory) -> Path:
    """The deployment package unpacked, as Lambda unpacks it into /var/task."""
    task = tmp_path_factory.mktemp("task")
    with zipfile.ZipFile(package / "deployment.zip") as archive:
        archive.extractall(task)
    return task


def _run_in_bundle(bundle: Path, runtime: Path, script: str, stdin: str) -> subprocess.CompletedProcess:
    # -I -S: no site-packages and no PYTHONPATH, only the bundle and what the runtime provides; -B: read-only.
    script = f"import sys; sys.path[:0] = [{str(bundle)!r}, {str(runtime)!r}]\n" + script
    return subprocess.run([sys.executable, "-I", "-S", "-B", "-c", script], input=stdin, capture_output=True, text=True)


_RUN_IN_BUNDLE = """
import json, sys
import botocore, pynamodb
import app
event = json.load(sys.stdin)
response = app.app(event, None)
print(json.dumps({"botocore": [botocore.__version__, botocore.__file__], "pynamodb": pynamodb.__file__,
                  "status": response["statusCode"], "body": json.loads(response["body"])}))
"""


def test_the_bundle_serves_requests_on_the_oldest_supported_botocore(bundle, tmp_path, dynamodb):
    from bitpay import key_utils

    runtime = tmp_path / "runtime"
    pip_install = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    subprocess.run([*pip_install, "--target", str(runtime), f"botocore=={OLDEST_BOTOCORE}"], check=True)
    sin = key_utils.get_sin_from_pem(key_utils.generate_pem())
    event = proxy_event(DEPLOYMENTS[0], "POST", "/tokens", body=json.dumps({"id": sin, "facade": "merchant"}))

    result = _run_in_bundle(bundle, runtime, _RUN_IN_BUNDLE, json.dumps(event))

    assert result.returncode == 0, result.stderr
    *request_lines, last = result.stdout.splitlines()
    served = json.loads(last)
    # The request's own log line, from the middleware the bundle's app registers.
    assert [json.loads(line)["route"] for line in request_lines] == ["/tokens"]
    assert served["botocore"] == [OLDEST_BOTOCORE, str(runtime / "botocore" / "__init__.py")]
    assert served["pynamodb"] == str(bundle / "pynamodb" / "__init__.py")
    assert served["status"] == 200, served["body"]
    pairing_code = served["body"]["data"][0]["pairingCode"]
    assert tokens.find_pairing(pairing_code).sin == sin


# What Lambda does with a function's Handler: import its module (and nothing else), call it.
_INVOKE_HANDLER = """
import importlib, json, sys, time
module_name, _, name = sys.argv[1].rpartition(".")
event, timeout = json.load(sys.stdin)

class Context:
    deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self):
        return int((self.deadline - time.monotonic()) * 1000)

handler = getattr(importlib.import_module(module_name), name)
handler(event, Context())
print(json.dumps({"app_imported": "app" in sys.modules}))
"""


@pytest.fixture(scope="session")
def runtime_sdk(tmp_path_factory) -> Path:
    """What the Lambda runtime adds to the path: this environment's boto3 and botocore, and nothing else."""
    runtime = tmp_path_factory.mktemp("runtime")
    site_packages = Path(botocore.__file__).parent.parent
    for name in RUNTIME_PACKAGES:
        (runtime / name).symlink_to(site_packages / name)
    return runtime


@pytest.mark.parametrize(
    "function_id", ["WatchPayments", "CheckPayments", "SweepNotifications", "DeliverNotifications"]
)
def test_the_jobs_run_from_the_bundle_as_lambda_imports_them(
    template, bundle, runtime_sdk, function_id, notifications_queue
):
    function = template["Resources"][function_id]["Properties"]
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:" + notifications_queue.url.rsplit("/", 1)[1]
    message = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": "handle", "Body": '{"invoiceId": "none", "due": 0}'}
    check = {**message, "Body": '{"invoices": ["none"], "open": true, "attempt": 1}'}
    event = {
        "WatchPayments": SCHEDULED_EVENT,
        "CheckPayments": sqs_event([check], queue_arn),
        "SweepNotifications": SCHEDULED_EVENT,
        "DeliverNotifications": sqs_event([message], queue_arn),
    }[function_id]
    script = f"sys.argv[1:] = [{function['Handler']!r}]\n" + _INVOKE_HANDLER

    result = _run_in_bundle(bundle, runtime_sdk, script, json.dumps([event, function["Timeout"]]))

    assert result.returncode == 0, result.stderr
    # The jobs' handlers live in chalicelib.jobs: Lambda never runs app.py for them.
    assert json.loads(result.stdout) == {"app_imported": False}


def test_the_cli_administers_a_stack_through_its_outputs(template, dynamodb):
    import boto3

    # The stack's tables, created by moto's CloudFormation (it has no SAM transform for the rest).
    tables = _resources(template, "AWS::DynamoDB::Table")
    stack_name = f"paylambda-{uuid.uuid4().hex[:8]}"
    stack = {
        "Parameters": {"BitcoinNetwork": template["Parameters"]["BitcoinNetwork"]},
        "Resources": tables,
        "Outputs": {name: template["Outputs"][name] for name in tables},
    }
    boto3.client("cloudformation", endpoint_url=dynamodb).create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(stack),
        Parameters=[{"ParameterKey": "BitcoinNetwork", "ParameterValue": "test"}],
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
    # Wallets are checked against the stack's network (testnet here), whatever this shell's BITCOIN_NETWORK says.
    account = HDKey.from_seed(os.urandom(32)).derive("m/84h/1h/0h").to_public()
    result = subprocess.run(
        [sys.executable, "-m", "deploy.admin", "--stack", stack_name, "create-store", "--owner", "alice"]
        + ["--name", "Testnet shop", "--wallet", account.to_base58(NETWORKS["test"]["zpub"])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "AWS_ENDPOINT_URL": dynamodb, "BITCOIN_NETWORK": "main"},
    )
    assert result.returncode == 0, result.stderr


def _alarms(template: dict) -> dict[str, dict]:
    return {name: alarm["Properties"] for name, alarm in _resources(template, "AWS::CloudWatch::Alarm").items()}


def _dimension(alarm: dict, name: str):
    return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}[name]


def test_alarms_reach_the_alarm_email_through_one_topic(template):
    [(topic_id, topic)] = _resources(template, "AWS::SNS::Topic").items()
    alarms = _alarms(template)
    queue_id, dead_letter_id = _queues(template)

    assert topic["Properties"]["Subscription"] == [{"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}]
    assert alarms and all(alarm["AlarmActions"] == [{"Ref": topic_id}] for alarm in alarms.values())
    by_metric = {}
    for name, alarm in alarms.items():
        by_metric.setdefault(alarm.get("MetricName"), []).append((name, alarm))
    [(_, dead_letters)] = by_metric["ApproximateNumberOfMessagesVisible"]
    assert _dimension(dead_letters, "QueueName") == {"Fn::GetAtt": [dead_letter_id, "QueueName"]}
    assert (dead_letters["ComparisonOperator"], dead_letters["Threshold"]) == ("GreaterThanThreshold", 0)
    [(_, oldest)] = by_metric["ApproximateAgeOfOldestMessage"]
    assert _dimension(oldest, "QueueName") == {"Fn::GetAtt": [queue_id, "QueueName"]}
    assert oldest["Threshold"] == 30 * 60
    [(_, server_errors)] = by_metric["5XXError"]
    assert _dimension(server_errors, "ApiName") == "paylambda"


def test_every_function_has_error_throttle_and_near_timeout_alarms(template):
    alarms = _alarms(template)
    for function_id, function in _functions(template).items():
        mine = {
            alarm["MetricName"]: alarm
            for alarm in alarms.values()
            if alarm.get("Namespace") == "AWS/Lambda" and _dimension(alarm, "FunctionName") == {"Ref": function_id}
        }
        assert {"Errors", "Throttles", "Duration"} <= set(mine), function_id
        timeout_ms = function["Properties"]["Timeout"] * 1000
        assert 0.5 * timeout_ms <= mine["Duration"]["Threshold"] < timeout_ms


def test_the_watcher_heartbeat_alarm_fires_when_runs_stop(template):
    scheduled = [
        name
        for name, function in _functions(template).items()
        if any(event["Type"] == "Schedule" for event in function["Properties"].get("Events", {}).values())
    ]
    assert sorted(scheduled) == ["SweepNotifications", "WatchPayments"]
    for function_id in scheduled:
        [heartbeat] = [
            alarm
            for alarm in _alarms(template).values()
            if alarm.get("MetricName") == "Invocations" and _dimension(alarm, "FunctionName") == {"Ref": function_id}
        ]

        # No data is what a stopped schedule produces.
        assert heartbeat["TreatMissingData"] == "breaching"
        assert (heartbeat["ComparisonOperator"], heartbeat["Threshold"]) == ("LessThanThreshold", 1)
        assert heartbeat["Period"] * heartbeat["EvaluationPeriods"] <= 15 * 60


def test_every_table_has_a_throttle_alarm(template):
    alarmed = {
        stat["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"]
        for alarm in _alarms(template).values()
        for stat in alarm.get("Metrics", [])
        if "MetricStat" in stat and stat["MetricStat"]["Metric"]["Namespace"] == "AWS/DynamoDB"
    }
    assert alarmed == set(_model_tables(template))


def test_log_alarms_match_what_the_code_logs(template):
    filters = _resources(template, "AWS::Logs::MetricFilter")
    patterns = {f["Properties"]["FilterPattern"].strip('"'): f["Properties"] for f in filters.values()}

    assert set(patterns) == {"esplora unavailable", "All rate sources failed"}
    for pattern, module in (
        ("esplora unavailable", "payments/watcher.py"),
        ("All rate sources failed", "payments/rates.py"),
    ):
        # A filter pattern is case-sensitive: the very words the module logs.
        assert pattern in (ROOT / "chalicelib" / module).read_text(), pattern
        metric = patterns[pattern]["MetricTransformations"][0]
        assert any(alarm.get("MetricName") == metric["MetricName"] for alarm in _alarms(template).values())


def test_the_api_is_throttled_and_guarded(template):
    [api] = _resources(template, "AWS::Serverless::Api").values()
    [settings] = api["Properties"]["MethodSettings"]
    [acl] = _resources(template, "AWS::WAFv2::WebACL").values()
    rules = {}
    for rule in acl["Properties"]["Rules"]:
        rate = rule["Statement"]["RateBasedStatement"]
        scope = rate["ScopeDownStatement"]
        matches = scope["AndStatement"]["Statements"] if "AndStatement" in scope else [scope]
        fields = {next(iter(m["ByteMatchStatement"]["FieldToMatch"])): m["ByteMatchStatement"] for m in matches}
        method = fields["Method"]["SearchString"] if "Method" in fields else None
        rules[(method, fields["UriPath"]["SearchString"])] = (rate["AggregateKeyType"], rule["Action"])

    assert (settings["ResourcePath"], settings["HttpMethod"]) == ("/*", "*")
    assert settings["ThrottlingRateLimit"] == {"Ref": "ApiRateLimit"}
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ApiBurstLimit"}
    assert api["Properties"]["DisableExecuteApiEndpoint"] == {"Fn::If": ["HasDomainName", True, False]}
    assert set(rules) == {("POST", "/tokens"), (None, "/login"), ("POST", "/invoices")}
    assert all(key == "IP" and action == {"Block": {}} for key, action in rules.values())


def test_consumers_and_the_watcher_cannot_multiply(template):
    consumer_id, event = _consumer(template)
    [watcher] = [f for f in _functions(template).values() if f["Properties"]["Handler"].endswith("watch_payments")]
    [schedule] = watcher["Properties"]["Events"].values()

    assert event["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "NotificationConcurrency"}}
    assert _when_enabled(watcher["Properties"]["ReservedConcurrentExecutions"]) == 1
    assert schedule["Properties"]["RetryPolicy"] == {"MaximumRetryAttempts": 0}
    assert watcher["Properties"]["EventInvokeConfig"]["MaximumRetryAttempts"] == 0


def test_backups_cover_every_table_daily_for_35_days(template):
    [plan] = _resources(template, "AWS::Backup::BackupPlan").values()
    [selection] = _resources(template, "AWS::Backup::BackupSelection").values()
    [rule] = plan["Properties"]["BackupPlan"]["BackupPlanRule"]

    assert rule["ScheduleExpression"].startswith("cron(0 ") and rule["ScheduleExpression"].endswith(" * * ? *)")
    assert rule["Lifecycle"] == {"DeleteAfterDays": 35}
    assert _when_enabled(rule["CopyActions"])[0]["DestinationBackupVaultArn"] == {"Ref": "BackupCopyVaultArn"}
    tables = {resource["Fn::GetAtt"][0] for resource in selection["Properties"]["BackupSelection"]["Resources"]}
    assert tables == set(_model_tables(template))


def test_the_rest_front_compresses_answers_of_a_kilobyte_and_more_for_clients_that_accept_gzip(template):
    """The checkout page (18 KB, its stylesheet and script inline) and its polls (3.6 KB) go out gzipped to browsers."""
    [rest_api_id] = _resources(template, "AWS::Serverless::Api")
    assert template["Resources"][rest_api_id]["Properties"]["MinimumCompressionSize"] == 1024


def test_the_http_api_front_routes_each_chalice_route_to_the_api_handler_in_payload_format_1(template):
    """ApiFront=http: each route Chalice's REST API sends to Lambda, same path, in the REST proxy event's format."""
    [rest_api_id] = _resources(template, "AWS::Serverless::Api")
    paths = template["Resources"][rest_api_id]["Properties"]["DefinitionBody"]["paths"]
    proxied = {
        f"{method.upper()} {path}"
        for path, methods in paths.items()
        for method, operation in methods.items()
        if operation["x-amazon-apigateway-integration"]["type"] == "aws_proxy"
    }
    [http_api] = _resources(template, "AWS::ApiGatewayV2::Api").values()
    [integration] = _resources(template, "AWS::ApiGatewayV2::Integration").values()
    [stage] = _resources(template, "AWS::ApiGatewayV2::Stage").values()
    routes = _resources(template, "AWS::ApiGatewayV2::Route").values()

    assert "GET /invoices/{invoice_id}" in proxied and "GET /{proxy+}" in proxied
    assert {route["Properties"]["RouteKey"] for route in routes} == proxied
    assert len(routes) == len(proxied)
    assert {route["Properties"]["Target"]["Fn::Sub"] for route in routes} == {"integrations/${HttpApiIntegration}"}
    assert integration["Properties"]["PayloadFormatVersion"] == "1.0"
    assert integration["Properties"]["IntegrationUri"] == {"Fn::GetAtt": ["APIHandler", "Arn"]}
    assert stage["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiBurstLimit"},
    }
    # The preflights Chalice's REST API answers itself, with the same headers.
    assert http_api["Properties"]["CorsConfiguration"]["AllowHeaders"] == sorted(
        ["Authorization", "Content-Type", "X-Accept-Version", "X-Amz-Date", "X-Amz-Security-Token", "X-Api-Key",
         "X-Identity", "X-Signature"]
    )  # fmt: skip
    # Exactly one front exists in a stack, whichever ApiFront says.
    conditions = template["Conditions"]
    assert template["Parameters"]["ApiFront"]["AllowedValues"] == ["rest", "http"]
    assert template["Resources"][rest_api_id]["Condition"] == "IsRestFront"
    assert conditions["IsRestFront"] == {"Fn::Equals": [{"Ref": "ApiFront"}, "rest"]}
    assert conditions["IsHttpFront"] == {"Fn::Equals": [{"Ref": "ApiFront"}, "http"]}
    for resource in [http_api, integration, stage, *routes]:
        assert resource["Condition"] == "IsHttpFront"
    permissions = _resources(template, "AWS::Lambda::Permission").values()
    assert sorted(permission["Condition"] for permission in permissions) == ["IsHttpFront", "IsRestFront"]
    # WAF does not attach to an HTTP API: the web ACL is the REST front's only.
    assert {"Condition": "IsRestFront"} in conditions["HasWebAcl"]["Fn::And"]
