"""Request signatures and Bearer signing keys, cross-checked against the installed Python SDK."""

from __future__ import annotations

import hashlib
import hmac

import httpx
import pytest
from inngest._internal import net, transforms
from inngest._internal.server_lib import HeaderKey, ServerKind

from app.drivers.signing import (
    bearer_matches,
    canonical_json,
    hashed_signing_key,
    is_valid_signing_key,
    response_distrust,
    sdk_signs_responses,
    sign,
    strip_key_prefix,
    verify_response_signature,
    verify_signature,
)

KEY = "signkey-prod-568c4116828e6e8384a554153722df93022e5cd29a6c2d1b0444a19a807ff315"
FALLBACK = "signkey-prod-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
NOW_S = 1_767_225_600
PAYLOAD = {"event": {"name": "app/x", "ts": 1}, "steps": {}, "ctx": {"run_id": "r"}, "é": 1.0}


def sdk_accepts(body: bytes, signature: str, key: str, fallback: str | None = None) -> bool:
    result = net.validate_request_sig(
        body=body,
        headers={HeaderKey.SIGNATURE.value: signature},
        mode=ServerKind.CLOUD,
        signing_key=key,
        signing_key_fallback=fallback,
    )
    return not isinstance(result, Exception)


def test_canonical_json_sorts_keys_drops_whitespace_and_keeps_utf8() -> None:
    assert canonical_json({"b": 1, "a": [1.0, "é", None]}) == '{"a":[1,"é",null],"b":1}'.encode()


def test_canonical_json_uses_ecmascript_number_format() -> None:
    assert canonical_json([1e21, 0.1, -0.0, 100.0]) == b"[1e+21,0.1,0,100]"


def test_signature_header_is_timestamp_then_hmac_of_body_and_timestamp() -> None:
    body = b'{"a":1}'
    expected = hmac.new(
        strip_key_prefix(KEY).encode(), body + str(NOW_S).encode(), hashlib.sha256
    ).hexdigest()
    assert sign(body, KEY, NOW_S) == f"t={NOW_S}&s={expected}"


def test_hmac_key_is_the_hex_text_not_the_decoded_bytes() -> None:
    body = b"{}"
    decoded_key_mac = hmac.new(
        bytes.fromhex(strip_key_prefix(KEY)), body + str(NOW_S).encode(), hashlib.sha256
    ).hexdigest()
    assert decoded_key_mac not in sign(body, KEY, NOW_S)


def test_python_sdk_verifies_a_canonical_body_signed_by_sign() -> None:
    body = canonical_json(PAYLOAD)
    assert sdk_accepts(body, sign(body, KEY, NOW_S), KEY)


def test_python_sdk_matches_the_sdks_own_server_side_signer() -> None:
    body = canonical_json(PAYLOAD)
    assert sign(body, KEY, NOW_S) == net.sign_request(body, KEY, NOW_S)


def test_python_sdk_rejects_a_signature_over_non_canonical_bytes() -> None:
    body = b'{ "steps": {}, "event": {"name": "app/x"} }'
    assert not sdk_accepts(body, sign(body, KEY, NOW_S), KEY)


def test_python_sdk_accepts_a_signature_made_with_its_fallback_key() -> None:
    body = canonical_json(PAYLOAD)
    assert sdk_accepts(body, sign(body, FALLBACK, NOW_S), KEY, fallback=FALLBACK)


def test_python_sdk_rejects_a_signature_made_with_another_key() -> None:
    body = canonical_json(PAYLOAD)
    assert not sdk_accepts(body, sign(body, FALLBACK, NOW_S), KEY)


def test_verify_signature_accepts_a_python_sdk_response_signature() -> None:
    body = b'{"raw": "response body" }'
    header = net.sign_response(body, KEY, NOW_S)
    assert not isinstance(header, Exception)
    assert verify_signature(header, body, [KEY], now_s=NOW_S)


def test_verify_signature_tries_every_key() -> None:
    body = b"[]"
    assert verify_signature(sign(body, FALLBACK, NOW_S), body, [KEY, FALLBACK], now_s=NOW_S)


def test_verify_signature_rejects_a_tampered_body() -> None:
    assert not verify_signature(sign(b"[1]", KEY, NOW_S), b"[2]", [KEY], now_s=NOW_S)


def test_verify_signature_rejects_an_unknown_key() -> None:
    assert not verify_signature(sign(b"[]", KEY, NOW_S), b"[]", [FALLBACK], now_s=NOW_S)


def test_verify_signature_rejects_signatures_older_or_newer_than_five_minutes() -> None:
    header = sign(b"[]", KEY, NOW_S)
    assert verify_signature(header, b"[]", [KEY], now_s=NOW_S + 300)
    assert not verify_signature(header, b"[]", [KEY], now_s=NOW_S + 301)
    assert not verify_signature(header, b"[]", [KEY], now_s=NOW_S - 301)


def test_verify_signature_without_max_age_ignores_the_clock() -> None:
    header = sign(b"[]", KEY, NOW_S)
    assert verify_signature(header, b"[]", [KEY], now_s=NOW_S + 10**6, max_age_s=None)


@pytest.mark.parametrize(
    "header", ["", "t=1", "s=abc", "t=abc&s=00", "t=-1&s=00", "garbage", "t=" + "9" * 5000 + "&s=0"]
)
def test_verify_signature_rejects_malformed_headers(header: str) -> None:
    assert not verify_signature(header, b"[]", [KEY], now_s=NOW_S, max_age_s=None)


def test_verify_signature_ignores_empty_keys() -> None:
    header = sign(b"[]", "", NOW_S)
    assert not verify_signature(header, b"[]", ["", "signkey-prod-"], now_s=NOW_S)


def test_verify_signature_reads_millisecond_timestamps_for_the_age_check() -> None:
    # inngest-js 3.22.4-3.54.0 and 4.0.0-4.2.4 sign replies with t = Date.now().
    header = sign(b"[]", KEY, NOW_S * 1000 + 999)
    assert verify_signature(header, b"[]", [KEY], now_s=NOW_S + 300)
    assert not verify_signature(header, b"[]", [KEY], now_s=NOW_S + 302)
    assert not verify_signature(sign(b"[]", KEY, (NOW_S - 301) * 1000), b"[]", [KEY], now_s=NOW_S)


@pytest.mark.parametrize(
    ("sdk", "signs"),
    [
        ("inngest-py:v0.4.8", False),
        ("inngest-py:v0.4.9", True),
        ("inngest-py:v0.5.19", True),
        ("inngest-js:v3.22.3", False),
        ("inngest-js:v3.22.4", True),
        ("inngest-js:v4.24.0", True),
        ("inngest-js:v4.0.0-beta.1", True),
        ("inngest-js:vnext", True),  # a real release always says which: assume a current one
        ("inngest-go:v0.11.0", False),
        ("streamed", False),
        ("", False),
        (None, False),
    ],
)
def test_which_sdk_releases_sign_their_responses(sdk: str | None, signs: bool) -> None:
    assert sdk_signs_responses(sdk) is signs


@pytest.mark.parametrize(
    ("sdk", "signs"),
    [("inngest-py:v0.5.19", False), ("inngest-js:v3.22.3", False), ("inngest-js:v4.24.0", True)],
)
def test_only_the_js_sdk_signs_what_it_streams(sdk: str, signs: bool) -> None:
    assert sdk_signs_responses(sdk, streamed=True) is signs


def test_python_sdk_response_signatures_verify_over_the_raw_body() -> None:
    body = b'{"b": 1, "a": [1.0, "\\u00e9"]}'
    header = net.sign_response(body, KEY, NOW_S)
    assert isinstance(header, str)
    assert verify_response_signature(header, body, "inngest-py:v0.5.19", [KEY], NOW_S)
    assert not verify_response_signature(header, body, "inngest-py:v0.5.19", [FALLBACK], NOW_S)


def test_python_sdk_0_4_11_to_0_4_15_signed_the_canonical_form_of_the_body() -> None:
    # Those releases signed responses as the installed SDK still signs requests.
    body = b'{"b": 1, "a": [1.0, "\\u00e9"]}'
    header = net.sign_request(body, KEY, NOW_S)
    assert isinstance(header, str)
    for sdk in ("inngest-py:v0.4.11", "inngest-py:v0.4.15"):
        assert verify_response_signature(header, body, sdk, [KEY], NOW_S)
    for sdk in ("inngest-py:v0.4.10", "inngest-py:v0.4.16", "inngest-js:v3.30.0"):
        assert not verify_response_signature(header, body, sdk, [KEY], NOW_S)


@pytest.mark.parametrize(
    "body", [b'{"n": 9007199254740993}', b"not json", b"[" * 100_000 + b"]" * 100_000]
)
def test_a_legacy_python_reply_jcs_cannot_express_is_refused_without_raising(body: bytes) -> None:
    # Beyond JCS's integer range, not JSON, or deeper than the decoder recurses: the SDK could
    # not have signed its canonical form, and a forged signature over it must not verify.
    header = sign(b"{}", KEY, NOW_S)
    assert not verify_response_signature(header, body, "inngest-py:v0.4.12", [KEY], NOW_S)


def test_response_distrust_names_what_is_wrong() -> None:
    body = b"[]"
    good = sign(body, KEY, NOW_S)
    assert response_distrust(good, body, "inngest-py:v0.5.19", [KEY], NOW_S) is None
    assert response_distrust(None, body, "inngest-py:v0.4.8", [KEY], NOW_S) is None
    bad = response_distrust(good, b"[1]", "inngest-py:v0.5.19", [KEY], NOW_S)
    assert bad is not None and "does not verify with the signing key" in bad
    unsigned = response_distrust(None, body, "inngest-js:v4.24.0", [KEY], NOW_S)
    assert unsigned is not None and "not signed, but inngest-js:v4.24.0 signs" in unsigned
    long_name = response_distrust(None, body, "inngest-js:v9.9.9" + "x" * 500, [KEY], NOW_S)
    assert long_name is not None and len(long_name) < 300


def test_hashed_signing_key_equals_the_python_sdk_hash() -> None:
    assert hashed_signing_key(KEY) == transforms.hash_signing_key(KEY)
    assert hashed_signing_key(KEY) == (
        "2e64ca0edc850db32ff684f967822c828f99cf57862e43205fdcf2eff8d95180"
    )


def test_hashed_signing_key_rejects_non_hex_keys() -> None:
    with pytest.raises(ValueError, match="hex"):
        hashed_signing_key("signkey-prod-xyz1")


def test_bearer_the_python_sdk_sends_matches_the_configured_key() -> None:
    seen: list[str | None] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(capture)) as client:
        request = client.build_request("GET", "http://stepwell.test/v0/runs/x/actions")
        result = net.fetch_with_auth_fallback_sync(
            client, request, signing_key=KEY, signing_key_fallback=None
        )
    assert not isinstance(result, Exception)
    assert seen == [f"Bearer {hashed_signing_key(KEY)}"]
    assert bearer_matches(seen[0], [KEY])


def test_typescript_bearer_keeps_the_prefix_and_still_matches() -> None:
    bearer = "Bearer signkey-prod-b2ed992186a5cb19f6668aade821f502c1d00970dfd0e35128d51bac4649916c"
    assert hashed_signing_key("signkey-prod-12345678") == bearer.split("signkey-prod-")[1]
    assert bearer_matches(bearer, ["signkey-prod-12345678"])


def test_bearer_may_carry_the_raw_key_with_or_without_prefix() -> None:
    assert bearer_matches(f"Bearer {KEY}", [KEY])
    assert bearer_matches(f"Bearer {strip_key_prefix(KEY)}", [KEY])


def test_bearer_prefix_is_case_insensitive() -> None:
    assert bearer_matches(f"bearer {hashed_signing_key(KEY)}", [KEY])


def test_bearer_matches_the_fallback_key() -> None:
    assert bearer_matches(f"Bearer {hashed_signing_key(FALLBACK)}", [KEY, FALLBACK])


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer ", "Bearer", "Basic abc", "Bearer signkey-prod-", "Bearer deadbeef"],
)
def test_bearer_rejects_missing_or_wrong_tokens(header: str | None) -> None:
    assert not bearer_matches(header, [KEY])


def test_bearer_rejects_everything_when_no_keys_are_configured() -> None:
    assert not bearer_matches(f"Bearer {hashed_signing_key(KEY)}", [])
    assert not bearer_matches("Bearer ", [""])


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        (KEY, True),
        ("signkey-test-00ff", True),
        ("00FF", True),
        ("signkey-prod-", False),
        ("", False),
        ("signkey-prod-abc", False),
        ("signkey-prod-zz", False),
        ("signkey-prod-00 ff", False),
    ],
)
def test_signing_keys_must_be_even_length_hex_after_the_prefix(key: str, valid: bool) -> None:
    assert is_valid_signing_key(key) is valid


def test_prefix_removal_follows_the_signkey_env_pattern() -> None:
    assert strip_key_prefix("signkey-branch-abcd") == "abcd"
    assert strip_key_prefix("abcd") == "abcd"
    assert strip_key_prefix("xsignkey-prod-abcd") == "xsignkey-prod-abcd"
