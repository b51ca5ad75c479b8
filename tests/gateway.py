"""Serve the Chalice app over real HTTP on localhost, shaped like API Gateway.

Built on `chalice local`'s own gateway, with one addition: an optional path
prefix (the API Gateway stage, or a custom domain's base path) that is part
of the URL the client requests and signs, and of `requestContext.path`, but
not of the route. The client's real address becomes `identity.sourceIp`, as
API Gateway reports it (`chalice local` always says 127.0.0.1).
"""

import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    LambdaEventConverter,
    LocalChalice,
    LocalDevServer,
    LocalGateway,
    MatchResult,
    RouteMatcher,
    ThreadedHTTPServer,
    create_local_server,
)


class _GreedyRouteMatcher(RouteMatcher):
    """API Gateway's matching with greedy `/prefix/{name+}` routes, which `chalice local` matches as one segment.

    Any other route that matches wins; a greedy one gets the rest of the path, under `name` as API Gateway
    names it in pathParameters (without the plus).
    """

    def __init__(self, route_urls: list[str]):
        self.greedy = [route for route in route_urls if route.endswith("+}")]
        super().__init__([route for route in route_urls if route not in self.greedy])

    def match_route(self, url: str) -> MatchResult:
        try:
            return super().match_route(url)
        except ValueError:
            parsed = urlparse(url)
            for route in self.greedy:
                prefix, _, variable = route.rpartition("/")
                rest = parsed.path.removeprefix(prefix + "/").rstrip("/")
                if parsed.path.startswith(prefix + "/") and rest:
                    return MatchResult(route, {variable[1:-2]: rest}, parse_qs(parsed.query, keep_blank_values=True))
            raise


class _PrefixedGateway(LocalGateway):
    def __init__(self, app_object, config, prefix: str, source_ip: str):
        super().__init__(app_object, config)
        self.event_converter = LambdaEventConverter(
            _GreedyRouteMatcher(list(app_object.routes)), app_object.api.binary_types
        )
        self._prefix = prefix
        self._source_ip = source_ip

    def handle_request(self, method, path, headers, body):
        if self._prefix and not path.startswith(self._prefix + "/"):
            return {"statusCode": 403, "headers": {}, "multiValueHeaders": {}, "body": '{"message": "Forbidden"}'}
        return super().handle_request(method, path.removeprefix(self._prefix), headers, body)

    def _generate_lambda_event(self, method, path, headers, body):
        event = super()._generate_lambda_event(method, path, headers, body)
        event["requestContext"]["path"] = self._prefix + event["requestContext"]["path"]
        event["requestContext"]["identity"]["sourceIp"] = self._source_ip
        return event


def _handler_class(prefix: str) -> type:
    class Handler(ChaliceRequestHandler):
        # chalice writes headers and body separately; with Nagle on, each response waits ~40 ms for a delayed ACK.
        disable_nagle_algorithm = True

        def __init__(self, request, client_address, server, app_object, config):
            self.local_gateway = _PrefixedGateway(app_object, config, prefix, client_address[0])
            BaseHTTPRequestHandler.__init__(self, request, client_address, server)

        def log_message(self, format, *args):
            pass

    return Handler


class _Server(ThreadedHTTPServer):
    # socketserver's default backlog of 5 resets connections when many clients arrive at once.
    request_queue_size = 128


class LocalApi:
    """The app served on 127.0.0.1 in a background thread; `url` is its base URL."""

    def __init__(self, app, prefix: str = ""):
        config = Config.create(chalice_stage="local", app_name="paylambda")
        if not isinstance(app, LocalChalice):
            # Makes the app's current_request thread-local, as `chalice local` does.
            create_local_server(app, config, "127.0.0.1", 0).server.server_close()
        self._server = LocalDevServer(
            app, config, "127.0.0.1", 0, handler_cls=_handler_class(prefix), server_cls=_Server
        )
        host, port = self._server.server.server_address[:2]
        self.url = f"http://{host}:{port}{prefix}"
        self._thread = threading.Thread(target=self._server.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server.server_close()
