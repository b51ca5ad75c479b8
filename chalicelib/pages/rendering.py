"""HTML responses for the hosted pages: templates, security headers, cookies, redirects, static files.

A `Visit` is one browser request and whoever is signed in. Route handlers
render and redirect through it, so every link, form action, redirect and
static URL carries the service's public base (with its path prefix), every
form its CSRF token, and every response the same security headers (the checkout, which carries its
stylesheet and script, its own Content-Security-Policy).
"""

import base64
import functools
import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlencode

from chalice import Response

from chalicelib.billing.currencies import format_amount
from chalicelib.billing.invoices import SATS_PER_BTC
from chalicelib.errors import ApiError, Forbidden
from chalicelib.models import SessionModel
from chalicelib.security import sessions
from chalicelib.settings import get_settings
from chalicelib.web import HSTS, ApiRequest

logger = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
SESSION_COOKIE = "paylambda_session"
# OWASP's device cookie: this browser once signed in to an account (see chalicelib.security.sessions).
DEVICE_COOKIE = "paylambda_device"
# Signs the sign-in form before there is a session (double-submit): a cross-site POST carries no SameSite=Lax cookie.
LOGIN_CSRF_COOKIE = "paylambda_login_csrf"
DEFAULT_PAGE = "/stores"
CSRF_FIELD = "csrf_token"


def _policy(scripts: str, styles: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            f"style-src {styles}",
            "img-src 'self' data:",
            # For a checkout page polling its invoice's status.
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


class StaticFile(NamedTuple):
    content: str
    content_type: str
    # In the URL pages link it with, so that a new version is a new URL.
    version: str
    # What a Content-Security-Policy names to allow this very content inline in a page.
    hash_source: str


def _read_static_files() -> dict[str, StaticFile]:
    files = {}
    for path in STATIC_DIR.iterdir():
        if path.suffix in _STATIC_TYPES:
            content = path.read_text()
            digest = hashlib.sha256(content.encode()).digest()
            hash_source = f"'sha256-{base64.b64encode(digest).decode()}'"
            files[path.name] = StaticFile(content, _STATIC_TYPES[path.suffix], digest.hex()[:12], hash_source)
    return files


_STATIC_FILES = _read_static_files()
CONTENT_SECURITY_POLICY = _policy("'self'", "'self'")
# The checkout carries its stylesheet and script in the page: a buyer's browser seldom has them cached,
# and each file would be one more API request per invoice. Only these contents may run, by their
# hashes: no other inline script or style, and no file, not even this site's.
CHECKOUT_CONTENT_SECURITY_POLICY = _policy(
    _STATIC_FILES["paylambda.js"].hash_source, _STATIC_FILES["paylambda.css"].hash_source
)
# Every response's, with its Content-Security-Policy.
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # A year of HTTPS only: a browser that once saw a page never sends its session cookie in clear.
    "Strict-Transport-Security": HSTS,
}
_ERROR_TITLES = {
    400: "This cannot be done",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    429: "Too many attempts",
    503: "Temporarily unavailable",
}


def format_time(milliseconds: int | None) -> str:
    if milliseconds is None:
        return ""
    return datetime.fromtimestamp(milliseconds / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_sats(sats: int) -> str:
    return format_amount(Decimal(sats) / SATS_PER_BTC, "BTC")


NETWORK_NAMES = {"test": "testnet", "signet": "signet", "regtest": "regtest"}


def test_network() -> str:
    """The test network's name ("regtest"...) every page's banner shows; empty on mainnet."""
    return NETWORK_NAMES.get(get_settings().bitcoin_network, "")


@functools.cache
def _environment():
    import jinja2  # loaded with the first page: API requests never need it

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # The checkout's text is translated ({% trans %}); its views pass the buyer's language's gettext.
        extensions=["jinja2.ext.i18n"],
    )
    environment.install_null_translations()
    environment.filters["time"] = format_time
    environment.filters["money"] = format_amount
    environment.filters["sats"] = format_sats
    # Functions, so that they read the settings when a page is drawn.
    environment.globals["test_network"] = test_network
    environment.globals["test_chain_controls"] = lambda: get_settings().test_chain_controls
    return environment


def render_fragment(template: str, **context) -> str:
    """A template rendered alone, for a part of a page that is refreshed by itself."""
    return _environment().get_template(template).render(**context)


def static_file(name: str) -> StaticFile | None:
    return _STATIC_FILES.get(name)


def _named_in_template(name: str) -> StaticFile:
    found = static_file(name)
    if found is None:
        raise ValueError(f"no static file {name}")
    return found


def local_path(value: str | None, default: str = DEFAULT_PAGE) -> str:
    """A path on this site to return to after signing in; anything else (another site) gives the default."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        return default
    return value


class Visit:
    """One browser request to the pages, and whoever is signed in."""

    def __init__(self, request: ApiRequest):
        self.request = request
        self._cookies: list[str] = []
        self._session: SessionModel | None = None
        self._session_loaded = False
        self._login_csrf_token: str | None = None

    @property
    def session(self) -> SessionModel | None:
        # Looked up on first use, so static files cost no database read.
        if not self._session_loaded:
            self._session = sessions.find(self.request.cookies.get(SESSION_COOKIE))
            self._session_loaded = True
        return self._session

    @property
    def login(self) -> str | None:
        return self.session.login if self.session else None

    def url(self, path: str, **query: str) -> str:
        return self.request.base_url + path + ("?" + urlencode(query) if query else "")

    def static(self, name: str) -> str:
        return self.url(f"/static/{name}", v=_named_in_template(name).version)

    def inline(self, name: str) -> str:
        """A static file's content, for a page that carries it (allowed by CHECKOUT_CONTENT_SECURITY_POLICY)."""
        return _named_in_template(name).content

    @property
    def csrf_token(self) -> str:
        """The token forms carry: the session's once signed in, before that the sign-in form's cookie."""
        if self.session is not None:
            return self.session.csrf_token
        if self._login_csrf_token is None:
            self._login_csrf_token = self.request.cookies.get(LOGIN_CSRF_COOKIE) or ""
            if not 20 <= len(self._login_csrf_token) <= 100:
                self._login_csrf_token = sessions.new_csrf_token()
                self.set_cookie(LOGIN_CSRF_COOKIE, self._login_csrf_token)
        return self._login_csrf_token

    def check_csrf(self, signed_in: bool) -> None:
        expected = self.session.csrf_token if signed_in else self.request.cookies.get(LOGIN_CSRF_COOKIE)
        if not sessions.csrf_matches(expected, self.request.form.get(CSRF_FIELD)):
            raise Forbidden(
                "This form has expired or did not come from this site, so nothing was changed. "
                "Go back, reload the page and try again."
            )

    # Cookies

    def set_cookie(self, name: str, value: str, max_age: int | None = None) -> None:
        attributes = [f"{name}={value}", f"Path={self.request.base_path or '/'}", "HttpOnly", "SameSite=Lax"]
        if max_age is not None:
            attributes.append(f"Max-Age={max_age}")
        if self.request.base_url.startswith("https://"):
            attributes.append("Secure")
        self._cookies.append("; ".join(attributes))

    @property
    def device_cookie(self) -> str | None:
        return self.request.cookies.get(DEVICE_COOKIE)

    def sign_in(self, secret: str, session: SessionModel, device_cookie: str) -> None:
        self._session, self._session_loaded = session, True
        self.set_cookie(SESSION_COOKIE, secret, max_age=int(sessions.SESSION_TTL.total_seconds()))
        self.set_cookie(DEVICE_COOKIE, device_cookie, max_age=int(sessions.DEVICE_COOKIE_TTL.total_seconds()))

    def sign_out(self) -> None:
        if self.session is not None:
            sessions.end(self.session)
        self._session = None
        self.set_cookie(SESSION_COOKIE, "", max_age=0)

    # Responses

    def _response(
        self, body: str, status: int, headers: dict[str, str], policy: str = CONTENT_SECURITY_POLICY
    ) -> Response:
        headers = {**headers, **SECURITY_HEADERS, "Content-Security-Policy": policy}
        if self._cookies:
            headers["Set-Cookie"] = list(self._cookies)
        return Response(body=body, status_code=status, headers=headers)

    def render(
        self,
        template: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
        policy: str = CONTENT_SECURITY_POLICY,
        **context,
    ) -> Response:
        body = _environment().get_template(template).render(visit=self, **context)
        headers = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store", **(headers or {})}
        return self._response(body, status, headers, policy)

    def redirect(self, path: str, **query: str) -> Response:
        return self._response("", 303, {"Location": self.url(path, **query), "Cache-Control": "no-store"})

    def download(self, body: str, content_type: str, filename: str) -> Response:
        """A file the browser saves rather than shows."""
        headers = {
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        }
        return self._response(body, 200, headers)

    def static_response(self, name: str) -> Response:
        found = static_file(name)
        if found is None:
            return self.error_page(404, "There is no such file.")
        # Pages link to each file with its version in the query, so a new version is a new URL: a browser
        # never asks again for one it has, not even to revalidate on a reload (immutable).
        headers = {"Content-Type": found.content_type, "Cache-Control": "public, max-age=31536000, immutable"}
        return self._response(found.content, 200, headers)

    def error_page(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        title = _ERROR_TITLES.get(status, "Error")
        return self.render("message.html", status=status, headers=headers, title=title, message=message, error=True)

    def form_error(self, template: str, error: ApiError, **context) -> Response:
        """A form shown again with the error that refused it (and the error's headers, e.g. Retry-After)."""
        return self.render(template, status=error.status, headers=error.headers, error=error.message, **context)

    def respond(self, view: Callable[[], Response], *, signed_in: bool) -> Response:
        """Run a page's view: sign-in and CSRF checks first, errors as readable pages."""
        try:
            if signed_in and self.session is None:
                if self.request.method == "GET":
                    return self.redirect("/login", next=self.request.route_path_with_query)
                return self.redirect("/login")
            if self.request.method == "POST":
                self.check_csrf(signed_in)
            return view()
        except ApiError as error:
            return self.error_page(error.status, error.message, error.headers)
        except Exception:
            logger.exception("unhandled error on %s %s", self.request.method, self.request.route_path)
            return self.error_page(500, "Something went wrong on our side. Please try again in a moment.")
