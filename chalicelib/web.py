"""What the API needs of an HTTP request, and the one place errors become responses."""

import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from chalice import Response

from chalicelib import fields
from chalicelib.errors import ApiError, BadRequest
from chalicelib.settings import get_settings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_FORM_FIELDS = 200
# One segment of PHP's bracketed form names: buyer[name], items[0][code].
_FORM_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")

# BitPay clients are strict about content types only in what they send;
# accepting these keeps a client that forgets the header from getting a 415.
API_CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded"]


@dataclass(frozen=True)
class ApiRequest:
    """A request as API Gateway (or `chalice local`) describes it.

    `path` is the path the client really requested (API Gateway's
    `requestContext.path`: with the stage or the custom domain's base path);
    `route_path` is the same request below the API's root. `query` keeps the
    order the parameters arrived in, since that is the order clients signed.
    """

    method: str
    headers: dict[str, str]
    path: str
    route_path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # API Gateway's view of the client address; unlike X-Forwarded-For, the client cannot set it.
    source_ip: str = ""

    @classmethod
    def from_chalice(cls, request: Any) -> "ApiRequest":
        query_params = request.query_params or {}
        query = [(name, value) for name in query_params for value in query_params.getlist(name)]
        route_path = request.path
        for name, value in (request.uri_params or {}).items():
            # A greedy `{name+}` (the catch-all route) gets the rest of the path under `name`.
            route_path = route_path.replace("{" + name + "}", value).replace("{" + name + "+}", value)
        path = request.context.get("path") or route_path
        if path.endswith("/") and not route_path.endswith("/"):
            route_path += "/"
        raw_body = request.raw_body or b""
        return cls(
            method=request.method,
            headers={name.lower(): value for name, value in request.headers.items()},
            path=path,
            route_path=route_path,
            query=query,
            body=raw_body if isinstance(raw_body, bytes) else raw_body.encode(),
            source_ip=(request.context.get("identity") or {}).get("sourceIp") or "",
        )

    @property
    def scheme(self) -> str:
        # API Gateway always sets X-Forwarded-Proto (https); `chalice local` serves plain http.
        return self.headers.get("x-forwarded-proto", "http").split(",")[0].strip().lower()

    @property
    def host(self) -> str:
        return self.headers.get("host", "")

    @property
    def base_url(self) -> str:
        """Where this API is reachable, as the client sees it: links and signed URLs start here."""
        public_base_url = get_settings().public_base_url
        if public_base_url:
            return public_base_url
        prefix = self.path.removesuffix(self.route_path) if self.path.endswith(self.route_path) else ""
        return f"{self.scheme}://{self.host}{prefix}"

    @property
    def base_path(self) -> str:
        """The path part of `base_url` ("" at the root, "/api" under a stage)."""
        return urlsplit(self.base_url).path

    @property
    def route_path_with_query(self) -> str:
        return self.route_path + ("?" + urlencode(self.query) if self.query else "")

    @functools.cached_property
    def cookies(self) -> dict[str, str]:
        """The Cookie header as a map; a malformed pair is skipped rather than failing the request."""
        cookies: dict[str, str] = {}
        for pair in self.headers.get("cookie", "").split(";"):
            name, separator, value = pair.strip().partition("=")
            if separator and name:
                cookies.setdefault(name, value.strip())
        return cookies

    @functools.cached_property
    def form(self) -> dict[str, str]:
        """An HTML form's fields (first value of each); empty unless the body is form-urlencoded."""
        content_type = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return {}
        self.check_body_size()
        try:
            fields = parse_qs(self.body.decode(), keep_blank_values=True, max_num_fields=50)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest("The form could not be read") from exc
        return {name: values[0] for name, values in fields.items()}

    def check_body_size(self) -> None:
        if len(self.body) > MAX_BODY_BYTES:
            raise BadRequest(f"Request body is larger than {MAX_BODY_BYTES // 1024} KiB")

    def query_value(self, name: str) -> str | None:
        return next((value for key, value in self.query if key == name), None)

    @functools.cached_property
    def json(self) -> dict:
        """The body as a JSON object (empty when there is no body)."""
        self.check_body_size()
        if not self.body.strip():
            return {}
        try:
            parsed = json.loads(self.body)
        # RecursionError: a few thousand nested brackets fit easily in 64 KiB.
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise BadRequest("Request body is not valid JSON") from exc
        if not isinstance(parsed, dict):
            raise BadRequest("Request body must be a JSON object")
        _check_strings(parsed)
        return parsed

    @functools.cached_property
    def fields(self) -> dict:
        """The body's fields: a JSON object, or a form (old PHP plugins post http_build_query's form).

        A body that starts like JSON is JSON whatever the header says: PHP's curl labels a string
        body it was given without a Content-Type as a form.
        """
        content_type = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded" or self.body.lstrip()[:1] in (b"{", b"["):
            return self.json
        self.check_body_size()
        try:
            pairs = parse_qsl(self.body.decode(), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest("The form could not be read") from exc
        return nest_form_fields(pairs)


def nest_form_fields(pairs: list[tuple[str, str]]) -> dict:
    """PHP's form names as the JSON object they stand for: `buyer[name]=Ann` is {"buyer": {"name": "Ann"}}.

    The first value of a name wins, like `ApiRequest.form`; a name both plain and bracketed is refused.
    """
    fields: dict = {}
    for name, value in pairs:
        match = _FORM_KEY.match(name)
        if match is None:
            raise BadRequest(f"Form field name {name[:50]!r} is not a name or a PHP-style name[key]")
        keys = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        target = fields
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise BadRequest(f"Form field {keys[0]!r} is both a value and a group")
        if isinstance(target.get(keys[-1]), dict):
            raise BadRequest(f"Form field {keys[0]!r} is both a value and a group")
        target.setdefault(keys[-1], value)
    return fields


def _check_strings(body: dict) -> None:
    """Refuse a body holding a string nothing can store (a lone surrogate), naming where it is.

    Every field of every route, read or not, is covered here: a lookup key such as a pairing
    code fails in DynamoDB's request encoding just as a stored field does. Iterative, since
    json.loads accepts nesting deeper than the rest of the stack leaves room for.
    """
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if fields.has_lone_surrogate(value):
                raise BadRequest(f"{path} {fields.LONE_SURROGATE}")
        elif isinstance(value, dict):
            for key, item in value.items():
                pending.append((f"{path}.{key}" if path else key, item))
                pending.append((path or "a field name", key))
        elif isinstance(value, list):
            pending.extend((f"{path}[{number}]", item) for number, item in enumerate(value))


# A year, as browsers' HSTS preload lists ask. Browsers ignore it over http (RFC 6797 section 8.1),
# so pages send it always; the API, whose clients are servers, only where it means something.
HSTS = "max-age=31536000; includeSubDomains"


def transport_headers(request: ApiRequest) -> dict[str, str]:
    """Headers every API response gets whatever its route: HSTS when the request came over https."""
    return {"Strict-Transport-Security": HSTS} if request.scheme == "https" else {}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Bodies carry API tokens, invoice tokens and buyers' data: no cache, shared or private, may keep one.
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store", **(headers or {})}
    return Response(body=json.dumps(body), status_code=status, headers=headers)


def error_response(error: ApiError) -> Response:
    return json_response({"error": error.message}, error.status, error.headers)


def chalice_errors(event: Any, get_response: Callable[[Any], Response]) -> Response:
    """Chalice's own refusals (415 for a media type the route does not take) in the API's `{"error": ...}` form.

    An HTTP middleware: Chalice answers these before any view runs, as `{"Code": ..., "Message": ...}`.
    """
    response = get_response(event)
    if isinstance(response.body, dict) and set(response.body) == {"Code", "Message"}:
        response.body = {"error": response.body["Message"]}
    return response


def api_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    """Turn domain errors into `{"error": ...}` responses; anything else is a logged 500."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except ApiError as error:
            return error_response(error)
        except Exception:
            logger.exception("unhandled error")
            return json_response({"error": "Internal error"}, 500)

    return wrapper
