"""Checks for the text and URL fields that requests carry, shared by the API, the pages and the CLI.

Each check takes the value as received and the field's name as clients know it, and either
returns the value to store or raises BadRequest naming the field, so that nothing DynamoDB,
JSON encoding, a log line, a mail header or an HTTP header cannot carry is ever stored.
"""

import ipaddress
import re
from urllib.parse import urlsplit

from chalicelib.errors import BadRequest

MAX_URL_LENGTH = 2000
# Lone UTF-16 surrogates (JSON "\ud800" decodes to one) cannot be encoded as UTF-8: storing one fails.
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 controls, DEL and C1 controls. Single-line fields end up in CSV exports, e-mail headers and
# log lines, where a CR/LF or an escape sequence would forge a line or a header of its own.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# Descriptions and posData are free text that shops fill with line breaks and tabs (posData is
# often pretty-printed JSON), so tab, LF and CR are allowed there; every other control still is not.
_CONTROL_IN_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Characters never valid in a URL's host (RFC 3986); "\\" would be read as "/" by browsers.
_BAD_IN_HOST = re.compile(r"""[\s<>"{}|\\^`/?#@]""")


LONE_SURROGATE = "contains an invalid character (a lone UTF-16 surrogate)"


def has_lone_surrogate(value: str) -> bool:
    return _SURROGATE.search(value) is not None


def _unreadable(value: str, multiline: bool = False) -> str | None:
    """What is wrong with `value`'s characters, or None when every one may be stored."""
    if has_lone_surrogate(value):
        return LONE_SURROGATE
    if (_CONTROL_IN_MULTILINE if multiline else _CONTROL).search(value):
        return "contains a control character"
    return None


def text(value: object, name: str, limit: int, *, multiline: bool = False) -> str | None:
    """A text field as sent (numbers as their text); None when absent or empty."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    if len(value) > limit:
        raise BadRequest(f"{name} must be at most {limit} characters")
    problem = _unreadable(value, multiline)
    if problem:
        raise BadRequest(f"{name} {problem}")
    return value


def http_url(value: object, name: str) -> str | None:
    """An absolute http(s) URL with a host and a valid port, as typed; None for an empty value."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH:
        raise BadRequest(f"{name} must be an absolute http(s) URL of at most {MAX_URL_LENGTH} characters")
    if has_lone_surrogate(value) or _CONTROL.search(value) or any(character.isspace() for character in value):
        raise BadRequest(f"{name} must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
    except ValueError:
        # An unclosed "[::1" or a bracketed host that is no IPv6 address.
        raise BadRequest(f"{name} must be an absolute http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "\\" in value:
        raise BadRequest(f"{name} must be an absolute http(s) URL")
    try:
        port = parts.port  # raises ValueError when out of 0-65535 or not a number
    except ValueError:
        port = 0
    if port == 0:
        raise BadRequest(f"{name} has an invalid port: it must be a number from 1 to 65535")
    if not _valid_host(parts.netloc.rpartition("@")[2]):
        raise BadRequest(f"{name} has an invalid host")
    return value


def _valid_host(host_and_port: str) -> bool:
    if host_and_port.startswith("["):
        inner = host_and_port[1:].partition("]")[0]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return False
        return True
    host = host_and_port.partition(":")[0]
    return bool(host) and not _BAD_IN_HOST.search(host) and ".." not in host
