"""Request signing and signing-key authentication between Stepwell and SDKs.

This module owns the cryptography of protocol §5: the canonical (RFC 8785 / JCS) JSON bytes we
sign, the ``X-Inngest-Signature`` header (``t=<unix s>&s=<hex HMAC-SHA256>``) on calls to SDKs
and its verification on SDK responses, which SDK releases sign their responses (and over which
bytes), the hashed form of a signing key that SDKs present as a Bearer token to our API, and the
shape check for a configured signing key.  The HMAC key is the signing key's hex *text* (prefix
removed), while the Bearer hash is over its decoded bytes — both quirks are the SDKs' and must
be reproduced exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
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
# A signature's ``t`` at or above this is in milliseconds: some inngest-js releases sign replies
# with Date.now() (3.22.4 to 3.54.0 and 4.0.0 to 4.2.4); as seconds it would be the year 5138.
_MS_TIMESTAMPS_FROM = 10**11


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
    ``t`` may be in seconds or, as some SDK releases send it, in milliseconds: the HMAC covers
    ``t`` as written, so only the age check needs its unit.
    """
    parsed = _parse_signature(header)
    if parsed is None:
        return False
    timestamp, signature = parsed
    if max_age_s is not None and _age_s(int(timestamp), now_s) > max_age_s:
        return False
    expected = signature.encode("ascii", "replace")
    return any(
        hmac.compare_digest(_mac(body, key, timestamp).encode("ascii"), expected)
        for key in signing_keys
        # An empty key would make signatures forgeable by anyone.
        if strip_key_prefix(key)
    )


def _age_s(timestamp: int, now_s: int) -> float:
    if timestamp >= _MS_TIMESTAMPS_FROM:
        return abs(now_s * 1000 - timestamp) / 1000
    return abs(now_s - timestamp)


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


# --- SDK responses (protocol §5.2) ---
#
# An SDK signs its reply to a request whose signature it verified, with the key that verified it.
# Python (comm_lib/utils.py wrap_handler -> CommResponse.sign -> net.sign_response) signs the
# body bytes it sends, except 0.4.11-0.4.15, which signed their JCS form; it never signs what it
# streams (the 201's header covers the placeholder body ``null``).  JS (InngestCommHandler
# prepareActionRes -> getResponseSignature) signs the body string it sends, and in a 201 stream
# puts that signature in the wrapped response's headers.  Neither signs in dev mode.

_SDK_RELEASE = re.compile(r"inngest-([a-z]+):v?(\d+)\.(\d+)\.(\d+)", re.ASCII)
# The first release of each SDK that signs its responses: inngest-py PR #141 (0.4.9), inngest-js
# PR #674 (3.22.4).
_FIRST_SIGNING_RELEASE = {"py": (0, 4, 9), "js": (3, 22, 4)}
_SIGNS_STREAMED_REPLIES = frozenset({"js"})
_PY_JCS_RELEASES = ((0, 4, 11), (0, 4, 16))  # signed the canonical form; PR #177 stopped it


def sdk_signs_responses(sdk: str | None, *, streamed: bool = False) -> bool:
    """Whether the SDK named by an ``X-Inngest-SDK`` value signs its replies to signed calls.

    Only the Python and JS SDKs are known to sign, from the releases above; anything else (no
    header, another SDK) is taken not to — forging a header gains nothing, since an old release
    could be named as easily.  A Python or JS SDK whose version cannot be read is taken to sign:
    every real release sends ``inngest-<lang>:v<x.y.z>``.
    """
    if not sdk:
        return False
    match = _SDK_RELEASE.match(sdk)
    if match is None:
        return sdk.startswith(("inngest-py:", "inngest-js:"))
    language = match[1]
    first = _FIRST_SIGNING_RELEASE.get(language)
    if first is None or (streamed and language not in _SIGNS_STREAMED_REPLIES):
        return False
    return _release(match) >= first


def response_distrust(
    signature: str | None,
    body: bytes,
    sdk: str | None,
    signing_keys: Sequence[str],
    now_s: int,
    *,
    streamed: bool = False,
) -> str | None:
    """Why an SDK reply (``X-Inngest-Signature``, body, ``X-Inngest-SDK``) cannot be believed.

    ``None`` when it can: its signature verifies with one of ``signing_keys``, or it carries
    none and comes from an SDK release that never signs.  A present signature always counts.
    """
    if signature is not None:
        if verify_response_signature(signature, body, sdk, signing_keys, now_s):
            return None
        return (
            "the SDK response's signature does not verify with the signing key: the response "
            "was not from your app, the app has a different signing key, or the clocks differ "
            "by more than 5 minutes"
        )
    if not sdk_signs_responses(sdk, streamed=streamed):
        return None
    named = (sdk or "")[:64]  # the replier chooses this header: repeat only a little of it
    return (
        f"the SDK response is not signed, but {named} signs its responses to signed requests: "
        "the response was not from your app, or the app does not verify requests (it runs in "
        "dev mode or skips signature validation)"
    )


def verify_response_signature(
    header: str, body: bytes, sdk: str | None, signing_keys: Sequence[str], now_s: int
) -> bool:
    """Whether an SDK reply's ``X-Inngest-Signature`` signs ``body`` (as received), within 5 min."""
    return verify_signature(header, _signed_reply_bytes(sdk, body), signing_keys, now_s)


def _signed_reply_bytes(sdk: str | None, body: bytes) -> bytes:
    match = _SDK_RELEASE.match(sdk or "")
    if match is None or match[1] != "py" or not body:
        return body
    first, fixed = _PY_JCS_RELEASES
    if not first <= _release(match) < fixed:
        return body
    try:
        return canonical_json(json.loads(body))
    except (ValueError, RecursionError):
        return body  # not canonicalizable: it cannot have been signed that way either


def _release(match: re.Match[str]) -> tuple[int, int, int]:
    return int(match[2]), int(match[3]), int(match[4])


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
