"""Abuse limits: fixed-window counters in DynamoDB, counted atomically before the work they guard.

A counter is one item ("<limit>#<subject>") whose `expiration` (a TTL) ends
its window. Counting is one conditional UpdateItem ADD that returns the new
value, so parallel requests each see their own number and at most `count` of
them get under the limit; nothing reads a counter and then writes it. DynamoDB
deletes expired items only eventually, so the ADD counts only while the
window is live, and a new window starts with a put conditioned on the old one
being absent or over: two requests restarting it at once cannot both be first.

Guarded work counts first and, when it turns out to be no failure (a right
password, a valid pairing code), gives its count back (`refund`): a limit on
failures then holds however many requests race.
"""

import ipaddress
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pynamodb.exceptions import PutError, UpdateError

from chalicelib.errors import ServiceUnavailable, TooManyRequests
from chalicelib.models import LimitModel, condition_failed
from chalicelib.settings import Rate

_MAX_SUBJECT_LENGTH = 200
# Each lost race means another request has just started a live window, so the next ADD succeeds.
_MAX_TRIES = 5


@dataclass(frozen=True)
class Count:
    """One request's place in a limit's window."""

    key: str
    rate: Rate
    hits: int
    expiration: datetime

    @property
    def over(self) -> bool:
        return self.hits > self.rate.count

    @property
    def retry_after_seconds(self) -> int:
        return max(1, math.ceil((self.expiration - datetime.now(UTC)).total_seconds()))


def client(address: str) -> str:
    """The subject a client address is counted as: an IPv6 client by its /64, which one subscriber holds whole."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        return str(mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def _key(limit: str, subject: str) -> str:
    return f"{limit}#{subject[:_MAX_SUBJECT_LENGTH]}"


def _add(key: str, amount: int, condition) -> LimitModel:
    counter = LimitModel(key)
    # ALL_NEW (pynamodb's choice): the item is only the key, the count and the window's end.
    counter.update(actions=[LimitModel.hits.add(amount)], condition=condition)
    return counter


def count(limit: str, subject: str, rate: Rate) -> Count:
    """Count one hit on `subject` under `limit` and say where it falls in the window."""
    key = _key(limit, subject)
    for _ in range(_MAX_TRIES):
        now = datetime.now(UTC)
        try:
            counter = _add(key, 1, LimitModel.expiration > now)
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
        else:
            return Count(key, rate, int(counter.hits), counter.expiration)
        expiration = now + timedelta(seconds=rate.seconds)
        try:
            LimitModel(key, hits=1, expiration=expiration).save(
                condition=LimitModel.key.does_not_exist() | (LimitModel.expiration <= now)
            )
        except PutError as exc:
            if not condition_failed(exc):
                raise
        else:
            return Count(key, rate, 1, expiration.replace(microsecond=0))
    raise ServiceUnavailable("Too many requests at once; try again in a moment")


def refund(counted: Count) -> None:
    """Give back a hit that turned out not to count (a success), unless its window has ended since."""
    try:
        _add(counted.key, -1, LimitModel.expiration == counted.expiration)
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


def refuse_over(counts: list[Count], message: str) -> None:
    """TooManyRequests (with the longest wait among them) when any of `counts` is over its limit."""
    over = [counted for counted in counts if counted.over]
    if over:
        wait = max(counted.retry_after_seconds for counted in over)
        minutes = math.ceil(wait / 60)
        raise TooManyRequests(f"{message} Try again in {minutes} minute{'s' if minutes > 1 else ''}.", wait)


def hit(limit: str, subject: str, rate: Rate, message: str) -> Count:
    """Count one hit and refuse it when it is over the limit."""
    counted = count(limit, subject, rate)
    refuse_over([counted], message)
    return counted
