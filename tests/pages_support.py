"""Helpers for the page tests: a browser without JavaScript (requests), signing in, forms, invoice changes."""

import html
import re
import uuid

import requests
from requests.adapters import HTTPAdapter

from tests.conftest import PASSWORD


class _FromAddress(HTTPAdapter):
    """Connects from another loopback address, so the server sees another client address."""

    def __init__(self, address: str):
        self._address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self._address, 0)
        super().init_poolmanager(*args, **kwargs)


def browser(address: str | None = None) -> requests.Session:
    session = requests.Session()
    if address:
        session.mount("http://", _FromAddress(address))
    return session


def fresh_address() -> str:
    return "127.{}.{}.{}".format(*uuid.uuid4().bytes[:3])


def csrf_token(page: requests.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def sign_in(api_url: str, login: str, password: str = PASSWORD, session=None, next_path=None) -> requests.Response:
    session = session or browser()
    form = session.get(f"{api_url}/login")
    data = {"login": login, "password": password, "csrf_token": csrf_token(form)}
    if next_path is not None:
        data["next"] = next_path
    return session.post(f"{api_url}/login", data=data, allow_redirects=False)


def signed_in(api_url: str, login: str) -> requests.Session:
    session = browser()
    assert sign_in(api_url, login, session=session).status_code == 303
    return session


def post_form(session: requests.Session, form_url: str, action_url: str, **fields) -> requests.Response:
    """Submit a form as a browser does: read the page that holds it, then post with its CSRF token."""
    fields.setdefault("csrf_token", csrf_token(session.get(form_url)))
    return session.post(action_url, data=fields, allow_redirects=False)


def visible_text(markup: str) -> str:
    """The text a browser shows: not the checkout's inline stylesheet and script."""
    markup = re.sub(r"<(script|style)>.*?</\1>", " ", markup, flags=re.DOTALL)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def text_of(page: requests.Response) -> str:
    return visible_text(page.text)


def update_invoice(invoice_id: str, **changes) -> None:
    """Set the invoice's stored attributes directly, for states a test does not drive through payments."""
    from chalicelib.models import InvoiceModel

    InvoiceModel.get(invoice_id).update(
        actions=[getattr(InvoiceModel, name).set(value) for name, value in changes.items()]
    )
