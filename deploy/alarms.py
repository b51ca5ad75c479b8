"""What tells the merchant something is wrong: one SNS topic, the alarms on it, an optional budget.

Every alarm exists only with an AlarmEmail (an alarm nobody hears costs $0.10 a month and helps
nobody). README "Alarms" says what each one means and what to do. The log patterns below are
the exact text the code logs (tests/test_deploy.py checks it is still there).
"""

from typing import Any

TOPIC_ID = "AlarmTopic"
HAS_EMAIL = "HasAlarmEmail"
HAS_BUDGET = "HasBudget"
# (metric, log group's function, pattern, module that logs it, threshold in 5 minutes, what it means)
LOG_PATTERNS = (
    ("EsploraUnavailable", "CheckPayments", "esplora unavailable", "chalicelib/payments/watcher.py", 3),
    ("RateSourcesFailed", "APIHandler", "All rate sources failed", "chalicelib/payments/rates.py", 1),
)
# An invocation this close to its timeout is one slow dependency away from being cut off.
DURATION_ALARM_FRACTION = 0.8
# No oldest queued notification may wait longer (each message is delayed 15 minutes at most).
OLDEST_MESSAGE_SECONDS = 30 * 60
PERIOD = 300

PARAMETERS = {
    "AlarmEmail": {
        "Type": "String",
        "Default": "",
        "AllowedPattern": r"^$|^[^@\s]+@[^@\s]+$",
        "Description": "Where alarms (and the budget) send email; empty for no alarms. Confirm the subscription",
    },
    "MonthlyBudget": {
        "Type": "Number",
        "Default": "0",
        "MinValue": "0",
        "Description": "Monthly cost in USD over which AlarmEmail hears (account-wide AWS Budget); 0 for none",
    },
}

CONDITIONS = {
    HAS_EMAIL: {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]},
    HAS_BUDGET: {"Fn::And": [{"Condition": HAS_EMAIL}, {"Fn::Not": [{"Fn::Equals": [{"Ref": "MonthlyBudget"}, "0"]}]}]},
}

RULES = {
    "EmailForBudget": {
        "RuleCondition": {"Fn::Not": [{"Fn::Equals": [{"Ref": "MonthlyBudget"}, "0"]}]},
        "Assertions": [
            {
                "Assert": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]},
                "AssertDescription": "A MonthlyBudget needs an AlarmEmail to tell",
            }
        ],
    }
}


def _metric(namespace: str, name: str, dimensions: dict[str, Any]) -> dict:
    return {
        "Namespace": namespace,
        "MetricName": name,
        "Dimensions": [{"Name": key, "Value": value} for key, value in dimensions.items()],
    }


def api_metric(name: str, dimensions: dict[str, Any]) -> dict:
    return _metric("AWS/ApiGateway", name, dimensions)


def alarm(description: str, metric: dict, statistic: str, comparison: str, threshold: float, **options) -> dict:
    """An alarm on one metric over 5-minute periods, telling the topic when it fires and when it clears."""
    properties = {
        "AlarmDescription": description,
        **metric,
        "Statistic": statistic,
        "Period": PERIOD,
        "EvaluationPeriods": 1,
        "ComparisonOperator": comparison,
        "Threshold": threshold,
        "TreatMissingData": "notBreaching",
        "AlarmActions": [{"Ref": TOPIC_ID}],
        "OKActions": [{"Ref": TOPIC_ID}],
        **options,
    }
    return {"Type": "AWS::CloudWatch::Alarm", "Condition": HAS_EMAIL, "Properties": properties}


def _function_alarms(function_id: str, timeout_seconds: int) -> dict:
    function = {"FunctionName": {"Ref": function_id}}
    lambda_metric = lambda name: _metric("AWS/Lambda", name, function)  # noqa: E731
    near_timeout = DURATION_ALARM_FRACTION * timeout_seconds * 1000
    return {
        f"{function_id}ErrorsAlarm": alarm(
            f"{function_id} failed (an exception or a timeout): its log group has the error",
            lambda_metric("Errors"),
            "Sum",
            "GreaterThanThreshold",
            0,
        ),
        f"{function_id}ThrottlesAlarm": alarm(
            f"{function_id} was throttled: the account's or its concurrency limit was reached",
            lambda_metric("Throttles"),
            "Sum",
            "GreaterThanThreshold",
            0,
        ),
        f"{function_id}DurationAlarm": alarm(
            f"{function_id} ran over {DURATION_ALARM_FRACTION:.0%} of its {timeout_seconds} s timeout",
            lambda_metric("Duration"),
            "Maximum",
            "GreaterThanThreshold",
            near_timeout,
        ),
    }


def _metric_filters(functions: set[str]) -> dict:
    resources: dict[str, Any] = {}
    for metric_name, function_id, pattern, _module, threshold in LOG_PATTERNS:
        if function_id not in functions:
            continue
        resources[f"{metric_name}Filter"] = {
            "Type": "AWS::Logs::MetricFilter",
            "Properties": {
                "LogGroupName": {"Ref": f"{function_id}LogGroup"},
                "FilterPattern": f'"{pattern}"',
                "MetricTransformations": [
                    {
                        "MetricNamespace": {"Fn::Sub": "${AWS::StackName}"},
                        "MetricName": metric_name,
                        "MetricValue": "1",
                        "DefaultValue": 0,
                    }
                ],
            },
        }
        metric = {"Namespace": {"Fn::Sub": "${AWS::StackName}"}, "MetricName": metric_name}
        resources[f"{metric_name}Alarm"] = alarm(
            f'"{pattern}" logged by {function_id} {threshold} times or more in 5 minutes',
            metric,
            "Sum",
            "GreaterThanOrEqualToThreshold",
            threshold,
        )
    return resources


def _table_alarms(table_ids: list[str]) -> dict:
    resources = {}
    for table_id in table_ids:
        table = {"TableName": {"Ref": table_id}}
        metrics = [
            {
                "Id": f"m{i}",
                "MetricStat": {"Metric": _metric("AWS/DynamoDB", name, table), "Period": PERIOD, "Stat": "Sum"},
                "ReturnData": False,
            }
            for i, name in enumerate(("ReadThrottleEvents", "WriteThrottleEvents"))
        ]
        total = {"Id": "throttled", "Expression": "FILL(m0, 0) + FILL(m1, 0)", "Label": "Throttled", "ReturnData": True}
        resources[f"{table_id}ThrottlesAlarm"] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Condition": HAS_EMAIL,
            "Properties": {
                "AlarmDescription": f"DynamoDB throttled requests on {table_id}",
                "Metrics": [*metrics, total],
                "EvaluationPeriods": 1,
                "ComparisonOperator": "GreaterThanThreshold",
                "Threshold": 0,
                "TreatMissingData": "notBreaching",
                "AlarmActions": [{"Ref": TOPIC_ID}],
                "OKActions": [{"Ref": TOPIC_ID}],
            },
        }
    return resources


def _budget() -> dict:
    subscriber = [{"SubscriptionType": "EMAIL", "Address": {"Ref": "AlarmEmail"}}]
    return {
        "Type": "AWS::Budgets::Budget",
        "Condition": HAS_BUDGET,
        "Properties": {
            "Budget": {
                "BudgetName": {"Fn::Sub": "${AWS::StackName}-monthly"},
                "BudgetType": "COST",
                "TimeUnit": "MONTHLY",
                "BudgetLimit": {"Amount": {"Ref": "MonthlyBudget"}, "Unit": "USD"},
            },
            "NotificationsWithSubscribers": [
                {
                    "Notification": {
                        "NotificationType": kind,
                        "ComparisonOperator": "GREATER_THAN",
                        "Threshold": threshold,
                        "ThresholdType": "PERCENTAGE",
                    },
                    "Subscribers": subscriber,
                }
                for kind, threshold in (("ACTUAL", 80), ("FORECASTED", 100))
            ],
        },
    }


def resources(
    function_timeouts: dict[str, int],
    scheduled: list[str],
    queue_id: str,
    dead_letter_queue_id: str,
    table_ids: list[str],
    api_name: str | None,
    api_stage: str | None,
) -> dict:
    """The topic, its email subscription and every alarm, for the functions, queues and tables given."""
    resources: dict[str, Any] = {
        TOPIC_ID: {
            "Type": "AWS::SNS::Topic",
            "Condition": HAS_EMAIL,
            "Properties": {
                "DisplayName": {"Fn::Sub": "${AWS::StackName} alarms"},
                "Subscription": [{"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}],
                "KmsMasterKeyId": "alias/aws/sns",
            },
        },
        "DeadLettersAlarm": alarm(
            "A notification message failed 5 times and is in the dead-letter queue",
            _metric(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                {"QueueName": {"Fn::GetAtt": [dead_letter_queue_id, "QueueName"]}},
            ),
            "Maximum",
            "GreaterThanThreshold",
            0,
        ),
        "OldestNotificationAlarm": alarm(
            "A queued notification waited over 30 minutes: the consumer is not keeping up or not running",
            _metric("AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": {"Fn::GetAtt": [queue_id, "QueueName"]}}),
            "Maximum",
            "GreaterThanThreshold",
            OLDEST_MESSAGE_SECONDS,
        ),
        "Budget": _budget(),
    }
    for function_id in scheduled:
        # No invocation for 10 minutes: the schedule stopped (or the function cannot start).
        resources[f"{function_id}HeartbeatAlarm"] = alarm(
            f"{function_id} has not run for 10 minutes: invoices are not being watched",
            _metric("AWS/Lambda", "Invocations", {"FunctionName": {"Ref": function_id}}),
            "Sum",
            "LessThanThreshold",
            1,
            EvaluationPeriods=2,
            TreatMissingData="breaching",
        )
    for function_id, timeout in function_timeouts.items():
        resources.update(_function_alarms(function_id, timeout))
    if api_name is not None:
        resources["Api5xxAlarm"] = alarm(
            "The API answered with a 5xx: APIHandler's log group has the error",
            _metric("AWS/ApiGateway", "5XXError", {"ApiName": api_name, "Stage": api_stage}),
            "Sum",
            "GreaterThanThreshold",
            0,
        )
    resources.update(_metric_filters(set(function_timeouts)))
    resources.update(_table_alarms(table_ids))
    return resources
