"""Lambda's side of an invocation: the events and the context AWS hands the handlers.

Mostly a BitPay client that calls the Lambda handler with API Gateway REST proxy events, as AWS would.

Each `Deployment` says how a request reaches the function: which Host header
API Gateway passes on, what `path` and `requestContext.path` hold (the stage
on the execute-api URL, the base path on a custom domain), and the base URL
the client itself uses, signs and expects links to start with. Requests are
signed with the bitpay client library's own key utilities (python-ecdsa).
"""

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from bitpay import key_utils

EXECUTE_API_HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"


@dataclass(frozen=True)
class Deployment:
    name: str
    client_base_url: str
    host: str
    # What API Gateway puts before the resource path in requestContext.path.
    context_prefix: str
    # API Gateway leaves a custom domain's base path in `path`, but strips the stage.
    path_has_prefix: bool
    via_cloudfront: bool = False
    # "rest": API Gateway's REST API; "http": an HTTP API with payload format 1.0 (deploy/http_front.py).
    front: str = "rest"

    @property
    def sets_public_base_url(self) -> bool:
        """The stack gives the functions PUBLIC_BASE_URL: behind CloudFront, or an HTTP API on a custom domain."""
        return self.via_cloudfront or (self.front == "http" and self.host != EXECUTE_API_HOST)


DEPLOYMENTS = [
    Deployment("execute-api", f"https://{EXECUTE_API_HOST}/api", EXECUTE_API_HOST, "/api", False),
    Deployment("domain-base-path", "https://pay.example.com/bitpay", "pay.example.com", "/bitpay", True),
    Deployment("domain-root", "https://pay.example.com", "pay.example.com", "", False),
    # CloudFront forwards to the execute-api origin (origin path /api) with the origin's Host.
    Deployment("cloudfront", "https://shop.example.com", EXECUTE_API_HOST, "/api", False, via_cloudfront=True),
    # An HTTP API's $default stage has no path; on a custom domain its API mapping's key ("bitpay") leads the path.
    Deployment("http-execute-api", f"https://{EXECUTE_API_HOST}", EXECUTE_API_HOST, "", False, front="http"),
    Deployment(
        "http-domain-base-path", "https://pay.example.com/bitpay", "pay.example.com", "/bitpay", True, front="http"
    ),
]


def _headers(deployment: Deployment, extra: dict[str, str]) -> dict[str, str]:
    headers = {
        "Host": deployment.host,
        "Accept": "application/json",
        "Content-Type": "application/json",
        "User-Agent": "bitpay-python/2.6",
        "X-Accept-Version": "2.0.0",
        "X-Amzn-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
        "X-Forwarded-For": "198.51.100.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if deployment.via_cloudfront:
        headers["Via"] = "2.0 f00dfeed.cloudfront.net (CloudFront)"
        headers["X-Amz-Cf-Id"] = uuid.uuid4().hex
        headers["X-Forwarded-For"] = "198.51.100.7, 130.176.1.1"
    headers.update(extra)
    return headers


def proxy_event(
    deployment: Deployment,
    method: str,
    resource: str,
    path_parameters: dict[str, str] | None = None,
    query: list[tuple[str, str]] | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict:
    """A REST API (v1) proxy event for `resource` (e.g. /invoices/{invoice_id}) on `deployment`.

    On an HTTP API front, the payload format 1.0 event its Lambda integration sends instead.
    """
    route_path = resource
    for name, value in (path_parameters or {}).items():
        route_path = route_path.replace("{" + name + "}", value)
    request_headers = _headers(deployment, headers or {})
    multi_query: dict[str, list[str]] = {}
    for name, value in query or []:
        multi_query.setdefault(name, []).append(value)
    if deployment.front == "http":
        return _http_api_event(
            deployment, method, resource, route_path, request_headers, multi_query, path_parameters, body
        )
    return {
        "resource": resource,
        "path": (deployment.context_prefix if deployment.path_has_prefix else "") + route_path,
        "httpMethod": method,
        "headers": request_headers,
        "multiValueHeaders": {name: [value] for name, value in request_headers.items()},
        "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": uuid.uuid4().hex[:16],
            "requestTime": "21/Nov/2025:01:02:03 +0000",
            "path": deployment.context_prefix + route_path,
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "api",
            "domainPrefix": deployment.host.split(".")[0],
            "requestTimeEpoch": 1763686923000,
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "198.51.100.7", "userAgent": request_headers["User-Agent"]},
            "domainName": deployment.host,
            "apiId": EXECUTE_API_HOST.split(".")[0],
        },
        "body": body,
        "isBase64Encoded": False,
    }


def _http_api_event(
    deployment: Deployment,
    method: str,
    resource: str,
    route_path: str,
    request_headers: dict[str, str],
    multi_query: dict[str, list[str]],
    path_parameters: dict[str, str] | None,
    body: str | None,
) -> dict:
    """An HTTP API's payload format 1.0 event, as AWS documents it (http-api-develop-integrations-lambda.html).

    Unlike a REST API's: every header name is lower-case, the stage is `$default` and never in the
    path, there is no resource id, `version` says 1.0, and the route (`resource`, `resourcePath`)
    is the HTTP API route's path, which deploy/http_front.py makes each of Chalice's paths. A body
    whose type is not text (a form's, application/x-www-form-urlencoded) arrives base64-encoded.
    """
    headers = {name.lower(): value for name, value in request_headers.items()}
    encoded = body is not None and headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
    path = (deployment.context_prefix if deployment.path_has_prefix else "") + route_path
    return {
        "version": "1.0",
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": EXECUTE_API_HOST.split(".")[0],
            "authorizer": {"claims": None, "scopes": None},
            "domainName": deployment.host,
            "domainPrefix": deployment.host.split(".")[0],
            "extendedRequestId": uuid.uuid4().hex[:16],
            "httpMethod": method,
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": "198.51.100.7",
                "user": None,
                "userAgent": headers["user-agent"],
                "userArn": None,
            },
            "path": path,
            "protocol": "HTTP/1.1",
            "requestId": f"{uuid.uuid4().hex[:14]}=",
            "requestTime": "21/Nov/2025:01:02:03 +0000",
            "requestTimeEpoch": 1763686923000,
            "resourceId": None,
            "resourcePath": resource,
            "stage": "$default",
        },
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "body": base64.b64encode(body.encode()).decode() if encoded else body,
        "isBase64Encoded": encoded,
    }


class LambdaContext:
    """The `context` of one invocation: its time left counts down from the function's timeout."""

    def __init__(self, function_name: str, timeout_seconds: float):
        self.function_name = f"paylambda-prod-{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def sqs_event(messages: list[dict], queue_arn: str) -> dict:
    """What the SQS event source hands the consumer for messages it received (ReceiveMessage's shape)."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": queue_arn.split(":")[3],
            }
            for message in messages
        ]
    }


class LambdaClient:
    """Calls `app(event, context)` like API Gateway; signs like a paired BitPay client."""

    def __init__(self, app, deployment: Deployment):
        self.app = app
        self.deployment = deployment
        self.pem = key_utils.generate_pem()
        self.sin = key_utils.get_sin_from_pem(self.pem)

    def request(
        self,
        method: str,
        resource: str,
        path_parameters: dict[str, str] | None = None,
        query: list[tuple[str, str]] | None = None,
        payload: dict | None = None,
        signed_base_url: str | None = None,
    ) -> tuple[int, dict]:
        """Send the request signed for `signed_base_url` + path (the client's own base URL by default)."""
        body = json.dumps(payload) if payload is not None else None
        route_path = resource
        for name, value in (path_parameters or {}).items():
            route_path = route_path.replace("{" + name + "}", value)
        url = (signed_base_url or self.deployment.client_base_url) + route_path
        if query:
            url += "?" + urlencode(query)
        headers = {
            "x-identity": key_utils.get_compressed_public_key_from_pem(self.pem),
            "x-signature": key_utils.sign(url + (body or ""), self.pem),
        }
        event = proxy_event(self.deployment, method, resource, path_parameters, query, body, headers)
        response = self.app(event, LambdaContext("APIHandler", 30))
        return response["statusCode"], json.loads(response["body"])

    def claim(self, pairing_code: str) -> str:
        status, body = self.request("POST", "/tokens", payload={"id": self.sin, "pairingCode": pairing_code})
        assert status == 200, body
        return body["data"][0]["token"]
