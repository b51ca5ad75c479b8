"""Turns a request into an authenticated caller: a proven identity and a token.

The client signs the URL it requested plus the raw body. API Gateway hands
the service only a decoded query map, so the signed URL is rebuilt as a small,
bounded set of candidates (query encodings, explicit default port) and the
request is accepted when one of them verifies.
"""

from dataclasses import dataclass
from urllib.parse import quote, quote_plus, urlencode, urlsplit

from chalicelib.api import request_log
from chalicelib.billing.stores import get_store
from chalicelib.errors import Forbidden, Unauthorized
from chalicelib.models import TokenModel
from chalicelib.security import api_keys, identity, tokens
from chalicelib.settings import get_settings
from chalicelib.web import ApiRequest

MAX_VERIFICATIONS = 8
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# Node's querystring leaves these unescaped, Python's urlencode does not.
_NODE_SAFE = "!'()*"


@dataclass(frozen=True)
class Identity:
    sin: str
    public_key: bytes


@dataclass(frozen=True)
class Caller:
    identity: Identity | None
    token: TokenModel | None
    # A store that lets anyone create invoices, for a caller with no credentials at all.
    public_store: str | None = None
    # The store of a merchant signed in to the pages (who acts as its merchant facade, without a token).
    page_store: str | None = None

    def __post_init__(self) -> None:
        # Every way of authenticating ends here: the request's log line names the store it acted for.
        request_log.note_store(self.token.store_id if self.token is not None else self.page_store or self.public_store)

    @property
    def store_id(self) -> str:
        store_id = self.token.store_id if self.token is not None else self.page_store or self.public_store
        assert store_id is not None
        return store_id

    @property
    def facade(self) -> str:
        if self.token is not None:
            return self.token.facade
        return "merchant" if self.page_store else "public"

    @property
    def token_reference(self) -> str:
        """What an invoice records as the token that made it ("pages" and "public" are never a token's value)."""
        if self.token is not None:
            return self.token.token
        return "pages" if self.page_store else "public"


def _bases(request: ApiRequest) -> list[str]:
    if get_settings().public_base_url:
        return [request.base_url + request.route_path]
    scheme, host = request.scheme, request.host
    default_port = _DEFAULT_PORTS.get(scheme)
    try:
        port = urlsplit(f"//{host}").port
    except ValueError:
        port = None
    # Some clients sign https://host:443/... while the Host header omits the port, or the reverse.
    if port is None and default_port:
        hosts = [host, f"{host}:{default_port}"]
    elif str(port) == default_port:
        hosts = [host, host.removesuffix(f":{port}")]
    else:
        hosts = [host]
    return [f"{scheme}://{h}{request.path}" for h in hosts]


def _query_orders(query: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The order received first; then the token first (bitpay 8) and last (btcpay-python), since API
    Gateway's decoded query map does not promise to keep the order the client sent."""
    token = [pair for pair in query if pair[0] == "token"]
    others = [pair for pair in query if pair[0] != "token"]
    return [query, token + others, others + token] if token and others else [query]


def _queries(request: ApiRequest) -> list[str]:
    if not request.query:
        return [""]
    encoded = (
        urlencode(order, quote_via=quote_via, safe=safe)
        for order in _query_orders(request.query)
        for quote_via, safe in ((quote_plus, ""), (quote, _NODE_SAFE))
    )
    return list(dict.fromkeys("?" + query for query in encoded))


def candidate_urls(request: ApiRequest) -> list[str]:
    """The URLs the client may have signed, most likely first, at most MAX_VERIFICATIONS."""
    urls = [base + query for query in _queries(request) for base in _bases(request)]
    return list(dict.fromkeys(urls))[:MAX_VERIFICATIONS]


def _signed_identity(request: ApiRequest) -> Identity | None:
    """The proven identity, None when the request is unsigned; Unauthorized when the proof fails."""
    public_key_hex = request.headers.get("x-identity")
    signature = request.headers.get("x-signature")
    if not public_key_hex and not signature:
        return None
    # Whatever the method (API Gateway hands a GET its body too): a signature is checked over the body.
    request.check_body_size()
    if not public_key_hex or not signature:
        raise Unauthorized("Signed requests need both x-identity and x-signature headers")
    try:
        public_key = identity.parse_public_key(public_key_hex)
    except identity.InvalidKey as exc:
        raise Unauthorized(str(exc)) from exc
    urls = [url.encode() for url in candidate_urls(request)]
    if identity.signs_one_of(public_key, urls, request.body, signature):
        return Identity(sin=identity.sin_from_public_key(public_key_hex), public_key=public_key)
    raise Unauthorized("Invalid signature: x-signature must sign the requested URL followed by the request body")


def optional_identity(request: ApiRequest) -> Identity | None:
    """For public routes: stale or bad signature headers must not fail them."""
    try:
        return _signed_identity(request)
    except Unauthorized:
        return None


def request_token(request: ApiRequest) -> str | None:
    if request.method in ("POST", "PUT"):
        token = request.fields.get("token")
        if token is not None and not isinstance(token, str):
            raise Unauthorized("token must be a string")
        return token or request.query_value("token")
    return request.query_value("token")


def _check_token(token: TokenModel | None, caller: Identity | None) -> TokenModel:
    if token is None:
        raise Unauthorized("Unknown token: pair this client to obtain one (POST /tokens)")
    if token.status == TokenModel.REVOKED:
        raise Unauthorized("This token has been revoked; pair the client again")
    if token.status == TokenModel.PENDING:
        raise Forbidden(
            f"This token is not approved yet: open /api-access-request?pairingCode={token.pairing_code} to approve it"
        )
    if token.sin is not None:
        if caller is None:
            raise Unauthorized("This token is bound to a client id: sign the request (x-identity, x-signature)")
        if caller.sin != token.sin:
            raise Unauthorized("This token does not belong to the key that signed the request")
    return token


def _api_key_caller(request: ApiRequest, facades: tuple[str, ...]) -> Caller | None:
    """The store's merchant when the request carries its legacy API key (`Authorization: Basic`)."""
    key = api_keys.key_from_header(request.headers.get("authorization", ""))
    if key is None:
        return None
    item = api_keys.find(key)
    if item is None:
        raise Unauthorized("Unknown API key: generate one on the store's Access tokens page")
    if "merchant" not in facades:
        raise Forbidden(f"This endpoint requires the {' or '.join(facades)} facade; an API key has merchant")
    return Caller(identity=None, token=item)


def authenticate(request: ApiRequest, facades: tuple[str, ...]) -> Caller:
    """The caller of a route open only to tokens of `facades` (or a store's legacy API key)."""
    token_value = request_token(request)
    if not token_value:
        keyed = _api_key_caller(request, facades)
        if keyed is not None:
            return keyed
    caller = _signed_identity(request)
    if not token_value:
        raise Unauthorized(f"This endpoint requires a {' or '.join(facades)} token")
    token = _check_token(tokens.find(token_value), caller)
    if token.facade not in facades:
        raise Forbidden(f"This endpoint requires the {' or '.join(facades)} facade; this token has {token.facade}")
    return Caller(identity=caller, token=token)


def authenticate_optional(request: ApiRequest, facades: tuple[str, ...]) -> Caller:
    """Like `authenticate`, but a request with no token (nor API key) at all is a public caller."""
    if not request_token(request) and api_keys.key_from_header(request.headers.get("authorization", "")) is None:
        return Caller(identity=optional_identity(request), token=None)
    return authenticate(request, facades)


def authenticate_store_key(request: ApiRequest, store_id: str) -> Caller:
    """A request signed by a key that holds an active merchant token for the store.

    BitPay's SDKs send some merchant requests with a resource's own token instead of the
    merchant token: the signature is then what proves the merchant.
    """
    caller = _signed_identity(request)
    if caller is None:
        raise Unauthorized("Sign this request with the merchant's key (x-identity, x-signature)")
    held = (t for t in tokens.active_for_sin(caller.sin) if t.facade == "merchant" and t.store_id == store_id)
    # The SIN index may lag a revocation: the token itself is read again, strongly consistent.
    token = next((found for t in held if (found := tokens.find(t.token)) and found.status == TokenModel.ACTIVE), None)
    if token is None:
        raise Forbidden("The key that signed this request holds no merchant token for this invoice's store")
    return Caller(identity=caller, token=token)


def authenticate_invoice_creator(request: ApiRequest) -> Caller:
    """A pos or merchant caller, or, for a store that lets anyone create invoices, a public one.

    The public path opens only when the request brings no credential at all: a bad token or key
    is refused as always, never silently treated as anonymous.
    """
    credentials = request_token(request) or request.headers.get("authorization") or request.headers.get("x-signature")
    store_id = request.query_value("storeId") or request.fields.get("storeId")
    if credentials or not store_id:
        return authenticate(request, ("pos", "merchant"))
    store = get_store(store_id) if isinstance(store_id, str) else None
    if store is None or not store.anyone_can_invoice:
        raise Unauthorized("This store does not let anyone create invoices: a pos or merchant token is required")
    return Caller(identity=None, token=None, public_store=store.store_id)
