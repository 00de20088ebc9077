"""Sticky sampling: which requests are mirrored to the candidate.

The decision is made per *user*, not per request, so a sampled user's whole conversation is mirrored and
an unsampled user's never is; comparing half a conversation tells us little. The user's bucket comes from
SHA-256, not Python's ``hash()``, whose value changes with every process (PYTHONHASHSEED), so every
replica and every restart puts a user in the same bucket.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from typing import Any, Literal

KeySource = Literal["user", "header", "client"]

DEFAULT_BUCKETS = 10_000

_FORCE_ON = frozenset({"on", "1", "true", "yes"})
_FORCE_OFF = frozenset({"off", "0", "false", "no"})


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """A header looked up case-insensitively, whatever kind of mapping the caller holds.

    aiohttp's headers are already case-insensitive; a plain dict (tests, replay) is not.
    """
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def user_key(
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    user_key_header: str,
    client_address: str | None,
) -> tuple[str, KeySource]:
    """The key that identifies the user, and where it came from.

    Precedence: the OpenAI ``user`` field of the body (the client says who its user is), then the
    configured header (a gateway in front of us says it), then the client address (all we know). Values
    are stripped of surrounding blanks, and a blank one counts as absent. With no client address either
    the key is the empty string: such requests share one decision.
    """
    # A JSON body that is not an object (a list, a string) is the primary's to refuse, not ours.
    if isinstance(body, Mapping):
        body_user = body.get("user")
        if isinstance(body_user, str) and body_user.strip():
            return body_user.strip(), "user"
    if user_key_header:
        from_header = header_value(headers, user_key_header)
        if from_header is not None and from_header.strip():
            return from_header.strip(), "header"
    return (client_address or "").strip(), "client"


def hash_user_key(key: str, secret: str = "") -> str:
    """The digest stored instead of the key itself: HMAC-SHA256 under `secret` when one is configured.

    A plain SHA-256 of a client address or a short user id can be reversed by brute force; with a secret
    it cannot, and the hash still links one user's pairs together.
    """
    if secret:
        return hmac.new(secret.encode("utf-8"), key.encode("utf-8"), hashlib.sha256).hexdigest()
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def bucket_of(key: str, buckets: int = DEFAULT_BUCKETS) -> int:
    """The key's bucket in ``range(buckets)``, the same in every process and every run.

    Uses the first 8 bytes of the SHA-256 digest; with 64 bits against at most a few thousand buckets the
    modulo bias is far below anything a sample could show.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, got {buckets}")
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % buckets


class StickySampler:
    """Mirrors the users whose bucket falls below ``rate × buckets``.

    Raising the rate keeps every user already sampled and adds new ones, because the threshold only moves
    up; lowering it drops users without swapping them for others.
    """

    def __init__(self, rate: float, buckets: int = DEFAULT_BUCKETS) -> None:
        if math.isnan(rate) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample rate must be between 0 and 1, got {rate}")
        if buckets < 1:
            raise ValueError(f"buckets must be at least 1, got {buckets}")
        self.rate = rate
        self.buckets = buckets
        self.threshold = rate * buckets

    def decide(self, key: str) -> bool:
        return bucket_of(key, self.buckets) < self.threshold


def forced_decision(headers: Mapping[str, str], force_header: str) -> bool | None:
    """The caller's override of the sampling decision: True, False, or None when there is none.

    A value we do not understand is ignored rather than refused: a typo in a debugging header must never
    cost the user their answer.
    """
    if not force_header:
        return None
    raw = header_value(headers, force_header)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _FORCE_ON:
        return True
    if value in _FORCE_OFF:
        return False
    return None
