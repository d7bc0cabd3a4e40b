"""Internal event ids derived from the ``x-inngest-event-id-seed`` header."""

from __future__ import annotations

import base64
import time

import pytest
from inngest._internal.client_lib import client as sdk_client
from inngest._internal.server_lib import HeaderKey
from ulid import ULID

from domain.event_ids import EventIdSeed, parse_seed, seeded_event_id

# The example from inngest/inngest pkg/event/id.go's documentation.
GO_EXAMPLE = "1743130137367,eii2YKXRVTJPuA=="
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference_id(millis: int, entropy: bytes, index: int) -> str:
    """The Go derivation written out independently: 48-bit ms, 10 bytes, +index on bytes 6-9."""
    counter = (int.from_bytes(entropy[6:], "big") + index) & 0xFFFFFFFF
    value = int.from_bytes(millis.to_bytes(6, "big") + entropy[:6] + counter.to_bytes(4, "big"))
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def test_parse_seed_reads_millis_and_ten_entropy_bytes() -> None:
    seed = parse_seed(GO_EXAMPLE)
    assert seed == EventIdSeed(millis=1743130137367, entropy=base64.b64decode("eii2YKXRVTJPuA=="))


def test_first_event_of_the_go_example_gets_the_expected_ulid() -> None:
    seed = parse_seed(GO_EXAMPLE)
    assert seed is not None
    assert seeded_event_id(seed, 1) == "01JQDAE4RQF8MBCR55T5AK4KXS"
    assert seeded_event_id(seed, 1) == reference_id(seed.millis, seed.entropy, 1)


def test_ids_carry_the_seed_milliseconds_as_ulid_time() -> None:
    seed = parse_seed(GO_EXAMPLE)
    assert seed is not None
    assert ULID.from_str(seeded_event_id(seed, 3)).milliseconds == 1743130137367


def test_each_event_index_gets_a_distinct_consecutive_id() -> None:
    seed = parse_seed(GO_EXAMPLE)
    assert seed is not None
    ids = [seeded_event_id(seed, i) for i in range(1, 5001)]
    assert len(set(ids)) == 5000
    assert ids == sorted(ids)


def test_same_header_gives_the_same_ids_so_retried_sends_match() -> None:
    first, second = parse_seed(GO_EXAMPLE), parse_seed(GO_EXAMPLE)
    assert first is not None and second is not None
    assert seeded_event_id(first, 2) == seeded_event_id(second, 2)


def test_counter_wraps_within_bytes_6_to_9_without_carrying_into_byte_5() -> None:
    entropy = bytes([1, 2, 3, 4, 5, 6, 0xFF, 0xFF, 0xFF, 0xFF])
    seed = EventIdSeed(millis=1, entropy=entropy)
    expected = int.from_bytes((1).to_bytes(6, "big") + bytes([1, 2, 3, 4, 5, 6, 0, 0, 0, 0]))
    assert ULID.from_str(seeded_event_id(seed, 1)).bytes == expected.to_bytes(16, "big")


def test_index_zero_uses_the_entropy_unchanged_as_invoke_does() -> None:
    seed = parse_seed(GO_EXAMPLE)
    assert seed is not None
    ulid = ULID.from_str(seeded_event_id(seed, 0))
    assert ulid.bytes[6:] == seed.entropy


@pytest.mark.parametrize(
    "header",
    [
        "",
        "1743130137367",
        "1743130137367,eii2YKXRVTJPuA==,x",
        "abc,eii2YKXRVTJPuA==",
        "0,eii2YKXRVTJPuA==",
        "-1,eii2YKXRVTJPuA==",
        "1.5,eii2YKXRVTJPuA==",
        f"{2**48},eii2YKXRVTJPuA==",
        "1743130137367,eii2YKXRVTJPuA",
        "1743130137367,eii2YKXRVTJP",
        "1743130137367,eii2YKXRVTJPuAA=",
        "1743130137367,not base64!",
    ],
)
def test_malformed_seed_is_none(header: str) -> None:
    assert parse_seed(header) is None


def test_python_sdk_seed_header_parses_and_yields_the_go_derivation() -> None:
    before = int(time.time() * 1000)
    header = sdk_client._seed()
    after = int(time.time() * 1000)
    seed = parse_seed(header)
    assert seed is not None
    assert before <= seed.millis <= after
    for index in (1, 2, 3):
        assert seeded_event_id(seed, index) == reference_id(seed.millis, seed.entropy, index)


def test_python_sdk_sends_the_seed_under_the_expected_header_name() -> None:
    assert HeaderKey.EVENT_ID_SEED.value == "x-inngest-event-id-seed"
