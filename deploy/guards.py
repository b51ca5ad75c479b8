"""Limits and guards: API throttling, the optional web ACL, concurrency caps, backups, tracing, access logs.

Each function here returns template fragments that `template.merge_template` merges into
Chalice's resources (or adds), and each option is a stack parameter with a safe default.
README "Limits" and "Backups" say what each one costs and when to change it.
"""

from typing import Any

from . import http_front

HAS_WAF = "HasWebAcl"
HAS_BACKUPS = "HasBackups"
HAS_BACKUP_COPY = "HasBackupCopy"
HAS_TRACING = "HasTracing"
HAS_ACCESS_LOGS = "HasAccessLogs"
RESERVES_WATCHER = "ReservesWatcherConcurrency"
# Per-IP rules of the web ACL: (rule, method or None for any, path the request ends with, limit parameter).
# Paths are matched at the end, so they hold under any stage or base path.
RATE_RULES = (
    ("pairing-requests", "POST", "/tokens", "WafAuthRequestsPerIp"),
    ("sign-in", None, "/login", "WafAuthRequestsPerIp"),
    ("invoice-creation", "POST", "/invoices", "WafInvoiceRequestsPerIp"),
)
BACKUP_SCHEDULE = "cron(0 3 * * ? *)"
BACKUP_RETENTION_DAYS = 35
BACKUP_MANAGED_POLICY = "AWSBackupServiceRolePolicyForBackup"
# A run that could not start within a minute is superseded by the next one.
SCHEDULED_EVENT_MAX_AGE_SECONDS = 60


def _flag(description: str, default: str = "false") -> dict:
    return {"Type": "String", "Default": default, "AllowedValues": ["true", "false"], "Description": description}


PARAMETERS = {
    "ApiRateLimit": {
        "Type": "Number",
        "Default": "50",
        "MinValue": "1",
        "Description": "Requests per second the API stage accepts in steady state (all callers together)",
    },
    "ApiBurstLimit": {
        "Type": "Number",
        "Default": "100",
        "MinValue": "1",
        "Description": "Requests the API stage accepts at once above ApiRateLimit",
    },
    "NotificationConcurrency": {
        "Type": "Number",
        "Default": "2",
        "MinValue": "2",
        "MaxValue": "1000",
        "Description": "Most notification consumers running at once (SQS's minimum is 2)",
    },
    "ReserveWatcherConcurrency": _flag(
        "Reserve one concurrent execution for the watcher, so no two runs overlap "
        "(false on an account whose concurrency limit is 10)",
        default="true",
    ),
    "EnableWebAcl": _flag("A WAFv2 web ACL with per-IP rate rules on POST /tokens, /login and POST /invoices"),
    "WafAuthRequestsPerIp": {
        "Type": "Number",
        "Default": "100",
        "MinValue": "10",
        "Description": "Per IP and 5 minutes: POST /tokens and /login requests the web ACL lets through",
    },
    "WafInvoiceRequestsPerIp": {
        "Type": "Number",
        "Default": "2000",
        "MinValue": "10",
        "Description": "Per IP and 5 minutes: POST /invoices requests the web ACL lets through (a shop's server)",
    },
    "EnableBackups": _flag(f"AWS Backup of every table, daily, kept {BACKUP_RETENTION_DAYS} days"),
    "BackupCopyVaultArn": {
        "Type": "String",
        "Default": "",
        "Description": "A backup vault in another region each backup is copied to; empty for no copy",
    },
    "EnableTracing": _flag("X-Ray tracing of the API and the functions"),
    "EnableAccessLogs": _flag("API Gateway access logs (needs API Gateway's CloudWatch role in the region)"),
}


def _is_true(parameter: str) -> dict:
    return {"Fn::Equals": [{"Ref": parameter}, "true"]}


CONDITIONS = {
    # WAF attaches to REST APIs only.
    HAS_WAF: {"Fn::And": [_is_true("EnableWebAcl"), {"Condition": http_front.IS_REST}]},
    HAS_BACKUPS: _is_true("EnableBackups"),
    HAS_BACKUP_COPY: {
        "Fn::And": [{"Condition": HAS_BACKUPS}, {"Fn::Not": [{"Fn::Equals": [{"Ref": "BackupCopyVaultArn"}, ""]}]}]
    },
    HAS_TRACING: _is_true("EnableTracing"),
    HAS_ACCESS_LOGS: _is_true("EnableAccessLogs"),
    RESERVES_WATCHER: _is_true("ReserveWatcherConcurrency"),
}

TRACING_STATEMENT = {
    "Fn::If": [
        HAS_TRACING,
        {
            "PolicyName": "xray",
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                        "Resource": "*",
                    }
                ],
            },
        },
        {"Ref": "AWS::NoValue"},
    ]
}


def _if(condition: str, value: Any, otherwise: Any = None) -> dict:
    return {"Fn::If": [condition, value, {"Ref": "AWS::NoValue"} if otherwise is None else otherwise]}


def function_properties(function_id: str, function: dict) -> dict:
    """What every function gets, and the scheduled ones' single run at a time without retries."""
    properties: dict[str, Any] = {"Tracing": _if(HAS_TRACING, "Active", "PassThrough")}
    events = function["Properties"].get("Events", {})
    schedules = [name for name, event in events.items() if event["Type"] == "Schedule"]
    if schedules:
        properties["ReservedConcurrentExecutions"] = _if(RESERVES_WATCHER, 1)
        # Lambda would retry a failed or throttled run for hours; the next minute's run does the same work.
        properties["EventInvokeConfig"] = {
            "MaximumRetryAttempts": 0,
            "MaximumEventAgeInSeconds": SCHEDULED_EVENT_MAX_AGE_SECONDS,
        }
        properties["Events"] = {
            name: {"Properties": {"RetryPolicy": {"MaximumRetryAttempts": 0}}} for name in schedules
        }
    consumers = [name for name, event in events.items() if event["Type"] == "SQS"]
    if consumers:
        scaling = {"ScalingConfig": {"MaximumConcurrency": {"Ref": "NotificationConcurrency"}}}
        properties["Events"] = {name: {"Properties": scaling} for name in consumers}
    return properties


def access_log_setting() -> dict:
    """Where and how either API front logs each request, when access logs are on."""
    access_log_format = {
        key: f"$context.{value}"
        for key, value in {
            "requestId": "requestId",
            "ip": "identity.sourceIp",
            "time": "requestTimeEpoch",
            "method": "httpMethod",
            "path": "path",
            "status": "status",
            "latencyMs": "responseLatency",
            "bytes": "responseLength",
        }.items()
    }
    return _if(
        HAS_ACCESS_LOGS,
        {
            "DestinationArn": {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]},
            "Format": "{" + ",".join(f'"{k}":"{v}"' for k, v in access_log_format.items()) + "}",
        },
    )


def api_properties(has_domain_condition: str) -> dict:
    """The REST API stage: throttled, tracing and access logs as options, execute-api off behind a domain."""
    return {
        "MethodSettings": [
            {
                "ResourcePath": "/*",
                "HttpMethod": "*",
                "ThrottlingRateLimit": {"Ref": "ApiRateLimit"},
                "ThrottlingBurstLimit": {"Ref": "ApiBurstLimit"},
            }
        ],
        # Behind a custom domain (TLS 1.2) the execute-api URL would be a second way in, on TLS 1.0.
        "DisableExecuteApiEndpoint": {"Fn::If": [has_domain_condition, True, False]},
        "TracingEnabled": {"Fn::If": [HAS_TRACING, True, False]},
        "AccessLogSetting": access_log_setting(),
    }


def _rate_rule(priority: int, name: str, method: str | None, path: str, limit: str) -> dict:
    def match(field: dict, text: str, constraint: str, transform: str) -> dict:
        return {
            "ByteMatchStatement": {
                "SearchString": text,
                "FieldToMatch": field,
                "TextTransformations": [{"Priority": 0, "Type": transform}],
                "PositionalConstraint": constraint,
            }
        }

    scope = match({"UriPath": {}}, path, "ENDS_WITH", "LOWERCASE")
    if method is not None:
        scope = {"AndStatement": {"Statements": [match({"Method": {}}, method, "EXACTLY", "NONE"), scope]}}
    return {
        "Name": name,
        "Priority": priority,
        "Action": {"Block": {}},
        "Statement": {
            "RateBasedStatement": {"Limit": {"Ref": limit}, "AggregateKeyType": "IP", "ScopeDownStatement": scope}
        },
        "VisibilityConfig": {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": name},
    }


def api_resources(rest_api_id: str, log_retention: dict) -> dict:
    return {
        "ApiWebAcl": {
            "Type": "AWS::WAFv2::WebACL",
            "Condition": HAS_WAF,
            "Properties": {
                "Scope": "REGIONAL",
                "DefaultAction": {"Allow": {}},
                "Rules": [_rate_rule(i, *rule) for i, rule in enumerate(RATE_RULES)],
                "VisibilityConfig": {
                    "SampledRequestsEnabled": True,
                    "CloudWatchMetricsEnabled": True,
                    "MetricName": {"Fn::Sub": "${AWS::StackName}-api"},
                },
            },
        },
        "ApiWebAclAssociation": {
            "Type": "AWS::WAFv2::WebACLAssociation",
            "Condition": HAS_WAF,
            "Properties": {
                "ResourceArn": {
                    "Fn::Sub": f"arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}::/restapis/${{{rest_api_id}}}"
                    f"/stages/${{{rest_api_id}.Stage}}"
                },
                "WebACLArn": {"Fn::GetAtt": ["ApiWebAcl", "Arn"]},
            },
        },
        "ApiAccessLogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "Condition": HAS_ACCESS_LOGS,
            "Properties": {"RetentionInDays": log_retention},
        },
    }


def backup_resources(table_ids: list[str]) -> dict:
    """A daily backup of every table into the stack's vault, optionally copied to another region's."""
    lifecycle = {"DeleteAfterDays": BACKUP_RETENTION_DAYS}
    copy = {"DestinationBackupVaultArn": {"Ref": "BackupCopyVaultArn"}, "Lifecycle": lifecycle}
    return {
        "BackupVault": {
            "Type": "AWS::Backup::BackupVault",
            "Condition": HAS_BACKUPS,
            # The recovery points are the point of it: they outlive the stack.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {"BackupVaultName": {"Fn::Sub": "${AWS::StackName}-tables"}},
        },
        "BackupPlan": {
            "Type": "AWS::Backup::BackupPlan",
            "Condition": HAS_BACKUPS,
            "Properties": {
                "BackupPlan": {
                    "BackupPlanName": {"Fn::Sub": "${AWS::StackName}-daily"},
                    "BackupPlanRule": [
                        {
                            "RuleName": "daily",
                            "TargetBackupVault": {"Ref": "BackupVault"},
                            "ScheduleExpression": BACKUP_SCHEDULE,
                            "Lifecycle": lifecycle,
                            "CopyActions": _if(HAS_BACKUP_COPY, [copy]),
                        }
                    ],
                }
            },
        },
        "BackupRole": {
            "Type": "AWS::IAM::Role",
            "Condition": HAS_BACKUPS,
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "backup.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "ManagedPolicyArns": [
                    {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/" + BACKUP_MANAGED_POLICY}
                ],
            },
        },
        "BackupSelection": {
            "Type": "AWS::Backup::BackupSelection",
            "Condition": HAS_BACKUPS,
            "Properties": {
                "BackupPlanId": {"Ref": "BackupPlan"},
                "BackupSelection": {
                    "SelectionName": "tables",
                    "IamRoleArn": {"Fn::GetAtt": ["BackupRole", "Arn"]},
                    "Resources": [{"Fn::GetAtt": [table_id, "Arn"]} for table_id in table_ids],
                },
            },
        },
    }
