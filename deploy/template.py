"""What the deployment adds to the template Chalice generates: tables, the queue, their IAM, the custom domain.

`chalice package --merge-template` deep-merges this document into Chalice's
SAM template. The tables come from the pynamodb models through pynamodb's own
schema (what `create_tables()` sends to a local DynamoDB), so a model or an
index cannot exist in the code and be missing on AWS. The notification and
checks queues are named after the queues Chalice's SQS event sources read.
Chalice's first template names the functions and their roles: each function
gets every table's name and the queues' URLs in its environment, and a policy
of its own with only what its code calls (FUNCTION_ACCESS), and may write only
to its own log group. Alarms (deploy/alarms.py) and limits, backups and options
(deploy/guards.py) are built from the same resources.
"""

from dataclasses import dataclass, field
from typing import Any

from pynamodb.models import Model

from . import alarms, guards, http_front

GET, BATCH_GET, QUERY = "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"
PUT, UPDATE, DELETE = "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"
CONDITION_CHECK = "dynamodb:ConditionCheckItem"
SEND = ("sqs:SendMessage",)
# What Lambda's event source mapping does with the consumer's role (AWSLambdaSQSQueueExecutionRole's actions).
CONSUME = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes")


@dataclass(frozen=True)
class Access:
    """What one function's code calls, tables named by their *_TABLE variable.

    A transaction needs the action of each item it writes (PutItem, UpdateItem),
    not an action of its own. pynamodb never calls DescribeTable once it has the
    model's schema; nothing here Scans or changes a table.
    """

    tables: dict[str, tuple[str, ...]]
    # Query on these indexes of the table.
    indexes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # On the notification queue, and on the watcher's checks queue.
    queue: tuple[str, ...] = ()
    # ses:SendEmail as the stack's EmailSender, and only as it.
    email: bool = False
    checks: tuple[str, ...] = ()


# Per function, as Chalice names them in the template; tests/test_deploy.py records the calls
# each handler makes and checks this against them both ways. The API sends to the notification
# queue on a resend, the checker with each change, the consumer to retry later, the sweep what was lost.
FUNCTION_ACCESS = {
    # The API and the pages.
    "APIHandler": Access(
        tables={
            "USERS_TABLE": (GET, UPDATE),
            "STORES_TABLE": (GET, PUT, UPDATE),
            # ConditionCheckItem: a claimed code's maker still active, in the activation transaction.
            "TOKENS_TABLE": (GET, PUT, UPDATE, DELETE, CONDITION_CHECK),
            # UpdateItem: a resend's transaction; BatchGetItem: a search page's invoices (the indexes carry keys).
            "INVOICES_TABLE": (GET, BATCH_GET, PUT, UPDATE),
            "SESSIONS_TABLE": (GET, PUT, DELETE),
            # PutItem: a counter's new window; UpdateItem: counting and giving back.
            "LIMITS_TABLE": (PUT, UPDATE),
            # UpdateItem: the device cookies' key, made or read in one call.
            "SECRETS_TABLE": (UPDATE,),
            # PutItem: a resend's transaction; Query: an invoice's notifications.
            "NOTIFICATIONS_TABLE": (PUT, QUERY),
            # PutItem: a wallet's claim, an address's claim, a client id's store; DeleteItem: a replaced wallet's;
            # GetItem: the invoice an address was claimed for (the Invoices page's search).
            "CLAIMS_TABLE": (GET, PUT, DELETE),
        },
        indexes={
            "STORES_TABLE": ("owner-index",),
            "TOKENS_TABLE": ("sin-index", "pairing-code-index", "store-index", "minted-by-index"),
            "INVOICES_TABLE": (
                "store-created-index",
                "store-status-index",
                "store-order-index",
                "store-item-index",
                "store-buyer-email-index",
            ),
            "SESSIONS_TABLE": ("login-index",),
        },
        queue=SEND,
    ),
    # The planner reads the watch index and queues the checks.
    "WatchPayments": Access(tables={}, indexes={"INVOICES_TABLE": ("watch-shard-index",)}, checks=SEND),
    # BatchGetItem: a batch's invoices; GetItem: one re-read after another writer changed it first;
    # PutItem on notifications: a change's transaction. It queues again the checks that failed.
    "CheckPayments": Access(
        tables={"INVOICES_TABLE": (GET, BATCH_GET, UPDATE), "NOTIFICATIONS_TABLE": (PUT,)},
        queue=SEND,
        checks=SEND + CONSUME,
    ),
    # Moves an overdue notification's next attempt and queues it again.
    "SweepNotifications": Access(
        tables={"NOTIFICATIONS_TABLE": (UPDATE,)}, indexes={"NOTIFICATIONS_TABLE": ("outbox-index",)}, queue=SEND
    ),
    # UpdateItem on stores: the store's signing secret, made on first use (if_not_exists).
    # Only the consumer sends email: an email is a notification it delivers.
    "DeliverNotifications": Access(
        tables={"NOTIFICATIONS_TABLE": (QUERY, UPDATE), "STORES_TABLE": (UPDATE,)},
        queue=SEND + CONSUME,
        email=True,
    ),
}

QUEUE_ID = "NotificationsQueue"
DEAD_LETTER_QUEUE_ID = "NotificationsDeadLetterQueue"
CHECKS_QUEUE_ID = "ChecksQueue"
# Which function consumes which queue (Chalice's names).
NOTIFICATIONS_CONSUMER, CHECKS_CONSUMER = "DeliverNotifications", "CheckPayments"
# The function behind the API (either front, deploy/http_front.py).
API_HANDLER = "APIHandler"
# A check message is only worth its plan's minute or so: an older one is dropped, the planner
# queues the invoice again. No dead-letter queue either: a check is never lost, only replanned.
CHECKS_RETENTION_SECONDS = 600
# SQS's name for a queue is at most 80 characters; the dead-letter queue adds this.
DEAD_LETTER_SUFFIX = "-dlq"
MAX_QUEUE_NAME = 80 - len(DEAD_LETTER_SUFFIX)
# AWS's advice for a queue feeding Lambda: a visibility timeout of at least six times the function's.
VISIBILITY_TIMEOUT_FACTOR = 6
# A refused IPN is not a failed message (the consumer queues a new one for the next attempt):
# a message comes back only when the consumer crashed or timed out on it, five times and it is parked.
MAX_RECEIVE_COUNT = 5
# Each message waits at most 15 minutes, but an outage of the consumer leaves them queued: four
# days outlast the whole retry schedule (about a day). Dead letters keep SQS's longest, 14 days,
# counted from when the message was first sent.
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600
DOMAIN_ID = "ApiDomainName"
BASE_PATH_MAPPING_ID = "ApiBasePathMapping"
# Lambda's limit on a function's name, which is the stack's name and the function's id.
MAX_FUNCTION_NAME = 64
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653)

PARAMETERS = {
    "DomainName": {
        "Type": "String",
        "Default": "",
        "Description": "Custom domain for the API (e.g. pay.example.com); empty for the execute-api URL only",
    },
    "CertificateArn": {
        "Type": "String",
        "Default": "",
        "Description": "ACM certificate for DomainName, in the stack's region (required with DomainName)",
    },
    "BasePath": {
        "Type": "String",
        "Default": "",
        "AllowedPattern": "^[A-Za-z0-9._~-]*$",
        "Description": "Path the API is served under on DomainName (e.g. bitpay); empty for the domain's root",
    },
    "PublicBaseUrl": {
        "Type": "String",
        "Default": "",
        "Description": "The API's public URL when a proxy such as CloudFront rewrites the Host header",
    },
    "EmailSender": {
        "Type": "String",
        "Default": "",
        "Description": "From address of invoice emails, verified in SES (an address or one of a verified domain); "
        "empty for no emails",
    },
    "BitcoinNetwork": {
        "Type": "String",
        "Default": "main",
        "AllowedValues": ["main", "test", "signet"],
        "Description": "The network invoices are paid on (store wallets must match): main, or test or signet to try it",
    },
    "EsploraUrl": {
        "Type": "String",
        "Default": "",
        "Description": "Esplora-compatible API the watcher asks (your electrs); empty for mempool.space",
    },
    "EsploraConcurrency": {
        "Type": "Number",
        "Default": "4",
        "MinValue": 1,
        "Description": "Esplora requests in flight per checker (times CheckConcurrency in all)",
    },
    "EsploraRateLimit": {
        "Type": "Number",
        "Default": "0",
        "MinValue": 0,
        "Description": "The Esplora server's requests per second, all checkers together (each paces to its share "
        "of it); 0 for no pacing (your own electrs)",
    },
    "CheckConcurrency": {
        "Type": "Number",
        "Default": "2",
        "MinValue": 2,
        "MaxValue": 1000,
        "Description": "Checkers running at once at most (the checks queue's MaximumConcurrency)",
    },
    "MonitoringWindowSeconds": {
        "Type": "Number",
        "Default": "86400",
        "MinValue": 0,
        "Description": "How long after expiry an invoice is watched (late payments, confirmations)",
    },
    "PaymentTolerancePercent": {
        "Type": "String",
        "Default": "0",
        "AllowedPattern": "^[0-9]{1,2}(\\.[0-9]+)?$",
        "Description": "Shortfall still accepted as paid in full, in percent",
    },
    "LogRetentionDays": {
        "Type": "Number",
        "Default": "30",
        "AllowedValues": [str(days) for days in LOG_RETENTION_DAYS],
        "Description": "How long CloudWatch keeps the functions' logs",
    },
}

CONDITIONS = {
    "HasDomainName": {"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]},
    "HasBasePath": {"Fn::Not": [{"Fn::Equals": [{"Ref": "BasePath"}, ""]}]},
    "HasPublicBaseUrl": {"Fn::Not": [{"Fn::Equals": [{"Ref": "PublicBaseUrl"}, ""]}]},
}

RULES = {
    "CertificateForDomain": {
        "RuleCondition": {"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]},
        "Assertions": [
            {
                "Assert": {"Fn::Not": [{"Fn::Equals": [{"Ref": "CertificateArn"}, ""]}]},
                "AssertDescription": "A custom DomainName needs the CertificateArn of its ACM certificate",
            }
        ],
    }
}


def table_logical_id(model: type[Model]) -> str:
    """USERS_TABLE -> UsersTable: the table's resource, and the stack output the CLI reads."""
    return "".join(part.capitalize() for part in model.Meta.table_name_variable.split("_"))


def _table_suffix(model: type[Model]) -> str:
    return model.Meta.table_name_variable.removesuffix("_TABLE").lower().replace("_", "-")


def _key_schema(keys: list[dict]) -> list[dict]:
    # DynamoDB wants the hash key first; pynamodb lists index keys in attribute order.
    return sorted(
        ({"AttributeName": key["AttributeName"], "KeyType": key["KeyType"]} for key in keys),
        key=lambda key: key["KeyType"] != "HASH",
    )


def _index(index: dict) -> dict:
    return {
        "IndexName": index["index_name"],
        "KeySchema": _key_schema(index["key_schema"]),
        "Projection": index["projection"],
    }


def table_resource(model: type[Model]) -> dict:
    schema = model._get_schema()
    properties: dict[str, Any] = {
        # Named after the stack: a change that would replace a table (its keys) fails
        # instead of silently starting an empty one.
        "TableName": {"Fn::Sub": f"${{AWS::StackName}}-{_table_suffix(model)}"},
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": sorted(schema["attribute_definitions"], key=lambda a: a["AttributeName"]),
        "KeySchema": _key_schema(schema["key_schema"]),
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},
    }
    if schema["global_secondary_indexes"]:
        properties["GlobalSecondaryIndexes"] = [_index(index) for index in schema["global_secondary_indexes"]]
    if schema["local_secondary_indexes"]:
        properties["LocalSecondaryIndexes"] = [_index(index) for index in schema["local_secondary_indexes"]]
    ttl_attribute = model._ttl_attribute()
    if ttl_attribute is not None:
        properties["TimeToLiveSpecification"] = {"AttributeName": ttl_attribute.attr_name, "Enabled": True}
    # Neither a `delete-table` nor a stack deletion removes it; only a stack whose creation
    # failed takes its new, empty tables with it.
    properties["DeletionProtectionEnabled"] = True
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "RetainExceptOnCreate",
        "UpdateReplacePolicy": "Retain",
        "Properties": properties,
    }


def _index_names(model: type[Model]) -> list[str]:
    schema = model._get_schema()
    return [index["index_name"] for index in schema["global_secondary_indexes"] + schema["local_secondary_indexes"]]


# The identity may be the sender's address or its domain; the condition pins the From address,
# so with no EmailSender (the empty string) nothing can be sent.
SEND_EMAIL = {
    "Effect": "Allow",
    "Action": ["ses:SendEmail"],
    "Resource": [{"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*"}],
    "Condition": {"StringEquals": {"ses:FromAddress": {"Ref": "EmailSender"}}},
}


def access_policy(access: Access, models: tuple[type[Model], ...], role_id: str) -> dict:
    """The function's own policy: its item actions on its tables, Query on its indexes, its use of the queue."""
    by_variable = {model.Meta.table_name_variable: model for model in models}
    unknown = (set(access.tables) | set(access.indexes)) - set(by_variable)
    if unknown:
        raise ValueError(f"no model has the table variable {sorted(unknown)}")
    statements = [
        {"Effect": "Allow", "Action": list(actions), "Resource": [{"Fn::GetAtt": [table_logical_id(model), "Arn"]}]}
        for variable, actions in access.tables.items()
        for model in [by_variable[variable]]
    ]
    indexes = []
    for variable, index_names in access.indexes.items():
        model = by_variable[variable]
        missing = set(index_names) - set(_index_names(model))
        if missing:
            raise ValueError(f"{model.__name__} has no index {sorted(missing)}")
        indexes += [{"Fn::Sub": f"${{{table_logical_id(model)}.Arn}}/index/{name}"} for name in index_names]
    if indexes:
        statements.append({"Effect": "Allow", "Action": [QUERY], "Resource": indexes})
    for queue_id, actions in ((QUEUE_ID, access.queue), (CHECKS_QUEUE_ID, access.checks)):
        if actions:
            queue = {"Fn::GetAtt": [queue_id, "Arn"]}
            statements.append({"Effect": "Allow", "Action": list(actions), "Resource": [queue]})
    if access.email:
        statements.append(SEND_EMAIL)
    return {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": "paylambda-access",
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
            "Roles": [{"Ref": role_id}],
        },
    }


def function_name(function_id: str) -> dict:
    return {"Fn::Sub": f"${{AWS::StackName}}-{function_id}"}


def check_stack_name(stack: str, function_ids) -> None:
    longest = max(len(function_id) for function_id in function_ids)
    if len(stack) + 1 + longest > MAX_FUNCTION_NAME:
        raise ValueError(f"stack name {stack} is over {MAX_FUNCTION_NAME - 1 - longest} characters")


def _log_group(function_id: str) -> dict:
    # Named from the stack, not from the function: the role's policy names the group, and the
    # function needs its role, so a name taken from the function would be a dependency cycle.
    return {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {
            "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{function_id}"},
            "RetentionInDays": {"Ref": "LogRetentionDays"},
        },
    }


def _role_policies(role_id: str, function_ids: list[str]) -> dict:
    """The role's inline policies, instead of Chalice's logs on every group: its functions' own groups."""
    logs = {
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [{"Fn::GetAtt": [f"{function_id}LogGroup", "Arn"]} for function_id in function_ids],
    }
    own_logs = {"PolicyName": f"{role_id}Logs", "PolicyDocument": {"Version": "2012-10-17", "Statement": [logs]}}
    return {"Properties": {"Policies": [own_logs, guards.TRACING_STATEMENT]}}


def _resources_of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {name: resource for name, resource in template["Resources"].items() if resource["Type"] == resource_type}


def _role_id(function_id: str, function: dict) -> str:
    role = function["Properties"].get("Role")
    if not (isinstance(role, dict) and "Fn::GetAtt" in role):
        raise ValueError(f"{function_id} has no role in the template: keep manage_iam_role on in .chalice/config.json")
    return role["Fn::GetAtt"][0]


_CHALICE_QUEUE_ARN = "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:"


def consumed_queues(functions: dict[str, dict]) -> dict[str, tuple[str, str]]:
    """Each function Chalice subscribed to a queue: its event source's name, and that queue's name.

    Chalice writes the event source's queue as an ARN built from the name the app
    was configured with (`on_sqs_message(queue=...)`), so the queues made here take
    exactly those names.
    """
    consumers = {}
    for function_id, function in functions.items():
        for event_id, event in function["Properties"].get("Events", {}).items():
            if event["Type"] != "SQS":
                continue
            queue = event["Properties"]["Queue"]
            arn = queue.get("Fn::Sub") if isinstance(queue, dict) else None
            if not (isinstance(arn, str) and arn.startswith(_CHALICE_QUEUE_ARN)):
                raise ValueError(f"{function_id} reads a queue this template does not make: {queue}")
            consumers[function_id] = (event_id, arn.removeprefix(_CHALICE_QUEUE_ARN))
    if set(consumers) != {NOTIFICATIONS_CONSUMER, CHECKS_CONSUMER}:
        raise ValueError(f"expected the notification and checks consumers; found {sorted(consumers)}")
    return consumers


def _checks_queue(name: str, checker_timeout: int) -> dict:
    return {
        CHECKS_QUEUE_ID: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": name,
                "VisibilityTimeout": VISIBILITY_TIMEOUT_FACTOR * checker_timeout,
                "MessageRetentionPeriod": CHECKS_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
            },
        }
    }


def _queues(name: str, consumer_timeout: int) -> dict:
    encrypted = {"SqsManagedSseEnabled": True}
    return {
        DEAD_LETTER_QUEUE_ID: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": name + DEAD_LETTER_SUFFIX,
                "MessageRetentionPeriod": DEAD_LETTER_RETENTION_SECONDS,
                **encrypted,
            },
        },
        QUEUE_ID: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": name,
                "VisibilityTimeout": VISIBILITY_TIMEOUT_FACTOR * consumer_timeout,
                "MessageRetentionPeriod": QUEUE_RETENTION_SECONDS,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [DEAD_LETTER_QUEUE_ID, "Arn"]},
                    "maxReceiveCount": MAX_RECEIVE_COUNT,
                },
                **encrypted,
            },
        },
    }


def _custom_domain(rest_api_id: str) -> dict:
    return {
        DOMAIN_ID: {
            "Type": "AWS::ApiGateway::DomainName",
            "Condition": "HasDomainName",
            "Properties": {
                "DomainName": {"Ref": "DomainName"},
                "RegionalCertificateArn": {"Ref": "CertificateArn"},
                "EndpointConfiguration": {"Types": ["REGIONAL"]},
                "SecurityPolicy": "TLS_1_2",
            },
        },
        BASE_PATH_MAPPING_ID: {
            "Type": "AWS::ApiGateway::BasePathMapping",
            "Condition": "HasDomainName",
            "Properties": {
                "DomainName": {"Ref": DOMAIN_ID},
                "RestApiId": {"Ref": rest_api_id},
                "Stage": {"Ref": f"{rest_api_id}.Stage"},
                "BasePath": {"Fn::If": ["HasBasePath", {"Ref": "BasePath"}, {"Ref": "AWS::NoValue"}]},
            },
        },
    }


def _outputs(chalice_template: dict, models: tuple[type[Model], ...], has_rest_api: bool) -> dict:
    outputs: dict[str, Any] = {
        table_logical_id(model): {
            "Description": f"{model.Meta.table_name_variable} for the CLI (make admin)",
            "Value": {"Ref": table_logical_id(model)},
        }
        for model in models
    }
    outputs["NotificationsDeadLetterQueueUrl"] = {
        "Description": "Notification messages the consumer failed on (README: the dead-letter queue)",
        "Value": {"Ref": DEAD_LETTER_QUEUE_ID},
    }
    outputs["NotificationsDeadLetterQueueArn"] = {
        "Description": "For aws sqs start-message-move-task (moves them back to the notification queue)",
        "Value": {"Fn::GetAtt": [DEAD_LETTER_QUEUE_ID, "Arn"]},
    }
    if has_rest_api:
        outputs["PublicURL"] = {
            "Description": "Base URL to give BitPay clients",
            "Value": {
                "Fn::If": [
                    "HasPublicBaseUrl",
                    {"Ref": "PublicBaseUrl"},
                    {
                        "Fn::If": [
                            "HasDomainName",
                            {"Fn::Sub": "https://${DomainName}/${BasePath}"},
                            {
                                "Fn::If": [
                                    http_front.IS_REST,
                                    chalice_template["Outputs"]["EndpointURL"]["Value"],
                                    http_front.ENDPOINT_URL,
                                ]
                            },
                        ]
                    },
                ]
            },
        }
        # Chalice's outputs of the REST API exist only with it.
        outputs.update({name: {"Condition": http_front.IS_REST} for name in ("RestAPIId", "EndpointURL")})
        outputs["DomainTarget"] = {
            "Condition": "HasDomainName",
            "Description": "Point DomainName here (CNAME or Route 53 alias)",
            "Value": {"Fn::GetAtt": [DOMAIN_ID, "RegionalDomainName"]},
        }
    return outputs


def merge_template(chalice_template: dict, models: tuple[type[Model], ...]) -> dict:
    """The document to merge into `chalice_template` (the one `chalice package` made without it)."""
    functions = _resources_of_type(chalice_template, "AWS::Serverless::Function")
    if set(functions) != set(FUNCTION_ACCESS):
        raise ValueError(f"FUNCTION_ACCESS must say what each function calls: {sorted(functions)}")
    # Chalice makes at most one REST API (RestAPI) for an app's routes.
    rest_api_id = next(iter(_resources_of_type(chalice_template, "AWS::Serverless::Api")), None)
    consumers = consumed_queues(functions)
    queue_name = consumers[NOTIFICATIONS_CONSUMER][1]
    if len(queue_name) > MAX_QUEUE_NAME:
        raise ValueError(f"queue name {queue_name} is over {MAX_QUEUE_NAME} characters: use a shorter stack name")
    environment = {model.Meta.table_name_variable: {"Ref": table_logical_id(model)} for model in models}
    environment["NOTIFICATIONS_QUEUE"] = {"Fn::GetAtt": [QUEUE_ID, "QueueName"]}
    # Given, the functions never have to look the queues up (nor be allowed to).
    environment["NOTIFICATIONS_QUEUE_URL"] = {"Ref": QUEUE_ID}
    environment["CHECKS_QUEUE"] = {"Fn::GetAtt": [CHECKS_QUEUE_ID, "QueueName"]}
    environment["CHECKS_QUEUE_URL"] = {"Ref": CHECKS_QUEUE_ID}
    environment["PUBLIC_BASE_URL"] = http_front.PUBLIC_BASE_URL
    # Every function: the emails are written to the outbox wherever the invoice changes.
    environment["EMAIL_SENDER"] = {"Ref": "EmailSender"}
    environment["BITCOIN_NETWORK"] = {"Ref": "BitcoinNetwork"}
    environment["ESPLORA_URL"] = {"Ref": "EsploraUrl"}
    environment["ESPLORA_CONCURRENCY"] = {"Ref": "EsploraConcurrency"}
    environment["ESPLORA_RATE_LIMIT"] = {"Ref": "EsploraRateLimit"}
    environment["CHECK_CONCURRENCY"] = {"Ref": "CheckConcurrency"}
    environment["MONITORING_WINDOW_SECONDS"] = {"Ref": "MonitoringWindowSeconds"}
    environment["PAYMENT_TOLERANCE_PERCENT"] = {"Ref": "PaymentTolerancePercent"}

    resources: dict[str, Any] = {table_logical_id(model): table_resource(model) for model in models}
    resources.update(_queues(queue_name, functions[NOTIFICATIONS_CONSUMER]["Properties"]["Timeout"]))
    checks_event, checks_name = consumers[CHECKS_CONSUMER]
    resources.update(_checks_queue(checks_name, functions[CHECKS_CONSUMER]["Properties"]["Timeout"]))
    roles: dict[str, list[str]] = {}
    for name, function in functions.items():
        role_id = _role_id(name, function)
        roles.setdefault(role_id, []).append(name)
        policy_id = f"{name}Access"
        resources[policy_id] = access_policy(FUNCTION_ACCESS[name], models, role_id)
        # A function that ran before its policy was attached would fail its first requests (and
        # CloudFormation checks the consumer's role can read the queue when it connects the two).
        properties = {
            "FunctionName": function_name(name),
            "Environment": {"Variables": environment},
            **guards.function_properties(name, function),
        }
        resources[name] = {"DependsOn": [policy_id], "Properties": properties}
        # Lambda would create this group itself, but with no expiry and left behind with the stack.
        resources[f"{name}LogGroup"] = _log_group(name)
    resources[CHECKS_CONSUMER]["Properties"]["Events"][checks_event]["Properties"] = {
        # The checker answers which messages failed; SQS delivers only those again.
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": {"Ref": "CheckConcurrency"}},
    }
    for role_id, function_ids in roles.items():
        resources[role_id] = _role_policies(role_id, function_ids)
    if rest_api_id is not None:
        resources.update(_custom_domain(rest_api_id))
        resources[BASE_PATH_MAPPING_ID]["Condition"] = http_front.REST_ON_DOMAIN
        resources[rest_api_id] = {"Condition": http_front.IS_REST, "Properties": guards.api_properties("HasDomainName")}
        resources[http_front.REST_PERMISSION_ID] = {"Condition": http_front.IS_REST}
        resources.update(guards.api_resources(rest_api_id, {"Ref": "LogRetentionDays"}))
        definition = chalice_template["Resources"][rest_api_id]["Properties"]["DefinitionBody"]
        resources.update(http_front.resources(definition, API_HANDLER, guards.access_log_setting()))
    table_ids = [table_logical_id(model) for model in models]
    resources.update(guards.backup_resources(table_ids))
    api = chalice_template["Resources"][rest_api_id]["Properties"] if rest_api_id is not None else None
    resources.update(
        alarms.resources(
            function_timeouts={name: function["Properties"]["Timeout"] for name, function in functions.items()},
            scheduled=[
                name
                for name, function in functions.items()
                if any(event["Type"] == "Schedule" for event in function["Properties"].get("Events", {}).values())
            ],
            queue_id=QUEUE_ID,
            dead_letter_queue_id=DEAD_LETTER_QUEUE_ID,
            table_ids=table_ids,
            api_name=api["DefinitionBody"]["info"]["title"] if api else None,
            api_stage=api["StageName"] if api else None,
        )
    )
    if api is not None:
        resources["Api5xxAlarm"]["Condition"] = http_front.REST_ALARMS

    return {
        "Description": "paylambda: a BitPay-compatible payment API (Lambda, API Gateway, DynamoDB, SQS)",
        "Parameters": {**PARAMETERS, **alarms.PARAMETERS, **guards.PARAMETERS, **http_front.PARAMETERS},
        "Conditions": {**CONDITIONS, **alarms.CONDITIONS, **guards.CONDITIONS, **http_front.CONDITIONS},
        "Rules": {**RULES, **alarms.RULES},
        "Resources": resources,
        "Outputs": _outputs(chalice_template, models, has_rest_api=rest_api_id is not None),
    }
