"""Request signing and signing-key authentication between Stepwell and SDKs.

This module owns the cryptography of protocol §5: the canonical (RFC 8785 / JCS) JSON bytes we
sign, the ``X-Inngest-Signature`` header (``t=<unix s>&s=<hex HMAC-SHA256>``) on calls to SDKs
and its verification on SDK responses, the hashed form of a signing key that SDKs present as a
Bearer token to our API, and the shape check for a configured signing key.  The HMAC key is the
signing key's hex *text* (prefix removed), while the Bearer hash is over its decoded bytes —
both quirks are the SDKs' and must be reproduced exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

import rfc8785

# ``signkey-prod-``, ``signkey-test-``, ``signkey-branch-`` …; ASCII \w like Go's and JS's regexps.
_KEY_PREFIX = re.compile(r"^signkey-\w+-", re.ASCII)
_HEX = re.compile(r"[0-9a-fA-F]+")
_BEARER = "BEARER"
_MAX_T_DIGITS = 19


def canonical_json(value: Any) -> bytes:
    """JCS bytes of ``value``: the Python SDK verifies signatures over this form, TS over raw."""
    encoded: bytes = rfc8785.dumps(value)
    return encoded


def strip_key_prefix(key: str) -> str:
    """``signkey-prod-abcd`` ⇒ ``abcd``; keys without the prefix are returned unchanged."""
    return _KEY_PREFIX.sub("", key, count=1)


def _mac(body: bytes, signing_key: str, timestamp: str) -> str:
    key = strip_key_prefix(signing_key).encode("utf-8")
    return hmac.new(key, body + timestamp.encode("ascii"), hashlib.sha256).hexdigest()


def sign(body: bytes, signing_key: str, unix_seconds: int) -> str:
    """The ``X-Inngest-Signature`` value for ``body`` (send exactly these bytes)."""
    return f"t={unix_seconds}&s={_mac(body, signing_key, str(unix_seconds))}"


def verify_signature(
    header: str,
    body: bytes,
    signing_keys: Sequence[str],
    now_s: int,
    max_age_s: int | None = 300,
) -> bool:
    """Whether ``header`` signs ``body`` (as received) with any of ``signing_keys``.

    ``max_age_s`` bounds |now - t| against replays (TS uses five minutes); ``None`` disables it.
    """
    parsed = _parse_signature(header)
    if parsed is None:
        return False
    timestamp, signature = parsed
    if max_age_s is not None and abs(now_s - int(timestamp)) > max_age_s:
        return False
    expected = signature.encode("ascii", "replace")
    return any(
        hmac.compare_digest(_mac(body, key, timestamp).encode("ascii"), expected)
        for key in signing_keys
        # An empty key would make signatures forgeable by anyone.
        if strip_key_prefix(key)
    )


def _parse_signature(header: str) -> tuple[str, str] | None:
    params = urllib.parse.parse_qs(header)
    timestamps, signatures = params.get("t"), params.get("s")
    if not timestamps or not signatures:
        return None
    timestamp = timestamps[0]
    # Digits only, int64-sized: the timestamp is both compared as a number and hashed as text.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_T_DIGITS):
        return None
    return timestamp, signatures[0]


def is_valid_signing_key(key: str) -> bool:
    """A usable signing key is non-empty, even-length hex once its prefix is removed."""
    bare = strip_key_prefix(key)
    return bool(_HEX.fullmatch(bare)) and len(bare) % 2 == 0


def hashed_signing_key(key: str) -> str:
    """hex(SHA-256(hex-decoded key)): the Bearer token the Python SDK sends (TS adds the prefix).

    Raises ``ValueError`` when the key is not valid hex.
    """
    if not is_valid_signing_key(key):
        raise ValueError("signing key must be even-length hex after its signkey-<env>- prefix")
    return hashlib.sha256(bytes.fromhex(strip_key_prefix(key))).hexdigest()


def bearer_matches(authorization_header: str | None, signing_keys: Sequence[str]) -> bool:
    """Whether an ``Authorization: Bearer …`` header names one of ``signing_keys``.

    The token may be the raw key or its hash, with or without a ``signkey-<env>-`` prefix.
    Every candidate is compared in constant time.
    """
    token = _bearer_token(authorization_header)
    if not token:
        return False
    presented = strip_key_prefix(token).encode("utf-8")
    matched = False
    for candidate in _accepted_tokens(signing_keys):
        # No short-circuit: the time taken must not reveal which candidate matched.
        matched |= hmac.compare_digest(presented, candidate)
    return matched


def _bearer_token(header: str | None) -> str:
    # Go accepts any case of "Bearer" followed by one separator character.
    if header is None or len(header) <= len(_BEARER) + 1:
        return ""
    if header[: len(_BEARER)].upper() != _BEARER:
        return ""
    return header[len(_BEARER) + 1 :].strip()


def _accepted_tokens(signing_keys: Sequence[str]) -> list[bytes]:
    tokens: list[bytes] = []
    for key in signing_keys:
        bare = strip_key_prefix(key)
        if not bare:
            continue
        tokens.append(bare.encode("utf-8"))
        if is_valid_signing_key(bare):
            tokens.append(hashed_signing_key(bare).encode("ascii"))
    return tokens
