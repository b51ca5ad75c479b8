"""The tests' own BitId client over raw HTTP: any request, bad input included, without a library's checks.

It signs exactly as the libraries do (python-ecdsa, DER, SHA-256 of URL + body), so its
signatures come out high-S about half the time, like theirs.
"""

import hashlib
import json
from urllib.parse import urlencode

import requests
from bitpay.key_utils import get_sin_from_pem
from ecdsa import SECP256k1, SigningKey
from ecdsa.util import sigencode_der


class BitIdClient:
    def __init__(self, base_url: str, token: str | None = None):
        self.base_url = base_url
        self.token = token
        self._key = SigningKey.generate(curve=SECP256k1)
        self.pem = self._key.to_pem().decode()
        self.public_key = self._key.get_verifying_key().to_string("compressed").hex()
        # The SIN as a real client library computes it, not as the server does.
        self.sin = get_sin_from_pem(self.pem)

    def sign(self, message: str | bytes) -> str:
        message = message.encode() if isinstance(message, str) else message
        return self._key.sign(message, hashfunc=hashlib.sha256, sigencode=sigencode_der).hex()

    def _headers(self, message: str | bytes, signed: bool) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "X-Accept-Version": "2.0.0"}
        if signed:
            headers |= {"X-Identity": self.public_key, "X-Signature": self.sign(message)}
        return headers

    def get(self, path: str, params: dict | None = None, *, signed=True, token=True) -> requests.Response:
        """GET `path`, with the client's token last in the query (as btcpay-python puts it) unless `token` is false."""
        query = dict(params or {})
        if token and self.token:
            query["token"] = self.token
        url = self.base_url + path + ("?" + urlencode(query) if query else "")
        return requests.get(url, headers=self._headers(url, signed))

    def delete(self, path: str, params: dict | None = None, *, signed=True) -> requests.Response:
        """DELETE `path`, signed over the URL like a GET, the token last in the query."""
        query = {**(params or {}), **({"token": self.token} if self.token else {})}
        url = self.base_url + path + ("?" + urlencode(query) if query else "")
        return requests.delete(url, headers=self._headers(url, signed))

    def post(self, path: str, body: dict | str | bytes, *, signed=True, token=True) -> requests.Response:
        """POST `body` (a dict gets the client's token added and is sent as JSON; text or bytes as they are)."""
        if isinstance(body, dict):
            body = json.dumps({**body, "token": self.token} if token and self.token else body)
        data = body.encode() if isinstance(body, str) else body
        url = self.base_url + path
        return requests.post(url, data=data, headers=self._headers(url.encode() + data, signed))
