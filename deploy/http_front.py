"""The API's front door, a stack parameter: API Gateway's REST API (Chalice's) or an HTTP API.

An HTTP API costs $1.00 per million requests where a REST API costs $3.50 (us-east-1), and
with payload format 1.0 it hands Lambda the event a REST proxy integration does: Chalice's
handler reads `requestContext.resourcePath` and `httpMethod`, `pathParameters`, the headers and
`multiValueQueryStringParameters`, all in format 1.0 (tests/test_public_url.py feeds it such
events). Each of Chalice's routes becomes an HTTP API route of the same path, so `resourcePath`
names the route Chalice matches. What only the REST front has: the web ACL (WAF does not attach
to HTTP APIs), X-Ray tracing of the stage, per-method throttles and usage plans; the HTTP API's
stage is throttled as a whole by the same ApiRateLimit and ApiBurstLimit.

Behind a custom domain, the HTTP API's event does not say the API mapping's path reliably, so
the functions are given the public base URL the domain makes (PUBLIC_BASE_URL).
"""

import re
from typing import Any

from . import alarms

HTTP_API_ID = "HttpApi"
STAGE_ID = "HttpApiStage"
INTEGRATION_ID = "HttpApiIntegration"
IS_REST, IS_HTTP = "IsRestFront", "IsHttpFront"
REST_ON_DOMAIN, HTTP_ON_DOMAIN = "RestFrontOnDomain", "HttpFrontOnDomain"
REST_ALARMS, HTTP_ALARMS = "HasRestFrontAlarms", "HasHttpFrontAlarms"
# The REST API's own resources in Chalice's template, made only with the REST front.
REST_PERMISSION_ID = "APIHandlerInvokePermission"

PARAMETERS = {
    "ApiFront": {
        "Type": "String",
        "Default": "rest",
        "AllowedValues": ["rest", "http"],
        "Description": "rest: API Gateway REST API (web ACL, tracing); http: HTTP API, $1.00 not $3.50 per million",
    },
}

CONDITIONS = {
    IS_REST: {"Fn::Equals": [{"Ref": "ApiFront"}, "rest"]},
    IS_HTTP: {"Fn::Equals": [{"Ref": "ApiFront"}, "http"]},
    REST_ON_DOMAIN: {"Fn::And": [{"Condition": IS_REST}, {"Condition": "HasDomainName"}]},
    HTTP_ON_DOMAIN: {"Fn::And": [{"Condition": IS_HTTP}, {"Condition": "HasDomainName"}]},
    REST_ALARMS: {"Fn::And": [{"Condition": IS_REST}, {"Condition": alarms.HAS_EMAIL}]},
    HTTP_ALARMS: {"Fn::And": [{"Condition": IS_HTTP}, {"Condition": alarms.HAS_EMAIL}]},
}


def routes(definition: dict) -> list[str]:
    """The HTTP API route keys ("GET /invoices/{invoice_id}") of the paths Chalice sends to its handler."""
    return [
        f"{method.upper()} {path}"
        for path, methods in definition["paths"].items()
        for method, operation in methods.items()
        if operation["x-amazon-apigateway-integration"]["type"] == "aws_proxy"
    ]


def _cors(definition: dict) -> dict:
    """The HTTP API's CORS answer, as Chalice's REST preflights (mock integrations) give it.

    An HTTP API answers preflights itself and for every route: no route sends one to Lambda.
    """
    allowed: dict[str, set[str]] = {"Origin": set(), "Headers": set(), "Methods": set()}
    for methods in definition["paths"].values():
        preflight = methods.get("options")
        if preflight is None:
            continue
        headers = preflight["x-amazon-apigateway-integration"]["responses"]["default"]["responseParameters"]
        for name, values in allowed.items():
            values.update(headers[f"method.response.header.Access-Control-Allow-{name}"].strip("'").split(","))
    return {
        "AllowOrigins": sorted(allowed["Origin"]),
        "AllowHeaders": sorted(allowed["Headers"]),
        "AllowMethods": sorted(allowed["Methods"]),
    }


def _route_id(route_key: str) -> str:
    method, path = route_key.split(" ", 1)
    words = re.findall(r"[A-Za-z0-9]+", path.replace("+", "Greedy")) or ["Root"]
    return "HttpRoute" + method.capitalize() + "".join(word[0].upper() + word[1:] for word in words)


def resources(definition: dict, function_id: str, access_log: dict) -> dict[str, Any]:
    """The HTTP API, its routes to `function_id`, its throttled stage, the domain's mapping and its alarm."""
    found: dict[str, Any] = {
        HTTP_API_ID: {
            "Type": "AWS::ApiGatewayV2::Api",
            "Condition": IS_HTTP,
            "Properties": {
                "Name": {"Fn::Sub": "${AWS::StackName}"},
                "ProtocolType": "HTTP",
                "CorsConfiguration": _cors(definition),
                # Behind a custom domain (TLS 1.2) the execute-api URL would be a second way in.
                "DisableExecuteApiEndpoint": {"Fn::If": ["HasDomainName", True, False]},
            },
        },
        INTEGRATION_ID: {
            "Type": "AWS::ApiGatewayV2::Integration",
            "Condition": IS_HTTP,
            "Properties": {
                "ApiId": {"Ref": HTTP_API_ID},
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": {"Fn::GetAtt": [function_id, "Arn"]},
                "PayloadFormatVersion": "1.0",
            },
        },
        STAGE_ID: {
            "Type": "AWS::ApiGatewayV2::Stage",
            "Condition": IS_HTTP,
            "Properties": {
                "ApiId": {"Ref": HTTP_API_ID},
                "StageName": "$default",
                "AutoDeploy": True,
                "DefaultRouteSettings": {
                    "ThrottlingRateLimit": {"Ref": "ApiRateLimit"},
                    "ThrottlingBurstLimit": {"Ref": "ApiBurstLimit"},
                },
                "AccessLogSettings": access_log,
            },
        },
        "HttpApiInvokePermission": {
            "Type": "AWS::Lambda::Permission",
            "Condition": IS_HTTP,
            "Properties": {
                "FunctionName": {"Ref": function_id},
                "Action": "lambda:InvokeFunction",
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": {
                    "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/*"
                },
            },
        },
        "HttpApiMapping": {
            "Type": "AWS::ApiGatewayV2::ApiMapping",
            "Condition": HTTP_ON_DOMAIN,
            "Properties": {
                "DomainName": {"Ref": "ApiDomainName"},
                "ApiId": {"Ref": HTTP_API_ID},
                "Stage": {"Ref": STAGE_ID},
                "ApiMappingKey": {"Fn::If": ["HasBasePath", {"Ref": "BasePath"}, {"Ref": "AWS::NoValue"}]},
            },
        },
        "HttpApi5xxAlarm": {
            **alarms.alarm(
                "The API answered with a 5xx: APIHandler's log group has the error",
                alarms.api_metric("5xx", {"ApiId": {"Ref": HTTP_API_ID}, "Stage": "$default"}),
                "Sum",
                "GreaterThanThreshold",
                0,
            ),
            "Condition": HTTP_ALARMS,
        },
    }
    for route_key in routes(definition):
        found[_route_id(route_key)] = {
            "Type": "AWS::ApiGatewayV2::Route",
            "Condition": IS_HTTP,
            "Properties": {
                "ApiId": {"Ref": HTTP_API_ID},
                "RouteKey": route_key,
                "Target": {"Fn::Sub": f"integrations/${{{INTEGRATION_ID}}}"},
            },
        }
    return found


# Where clients reach the HTTP API without a custom domain (its $default stage has no path).
ENDPOINT_URL = {"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"}
# PUBLIC_BASE_URL: the one given, else the custom domain's when the HTTP API is behind it.
PUBLIC_BASE_URL = {
    "Fn::If": [
        "HasPublicBaseUrl",
        {"Ref": "PublicBaseUrl"},
        {"Fn::If": [HTTP_ON_DOMAIN, {"Fn::Sub": "https://${DomainName}/${BasePath}"}, ""]},
    ]
}
