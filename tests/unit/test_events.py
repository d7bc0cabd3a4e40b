"""Inbound event rules (``domain.events``): defaults, every rejection, and request ids."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from ulid import ULID

from domain.errors import InvalidEvent
from domain.event_ids import parse_seed, seeded_event_id
from domain.events import (
    INVOKED_EVENT_NAME,
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_REQUEST,
    MAX_NAME_LENGTH,
    MAX_TS_MS,
    MIN_TS_MS,
    event_ids_for,
    invocation_event,
    normalize_event,
    normalize_events,
)

NOW = 1_800_000_000_000
SEED = "1743130137367,eii2YKXRVTJPuA=="


def rejection(raw: Any, index: int = 0) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        normalize_event(raw, index, NOW)
    return info.value


def counter_ids() -> Any:
    numbers = itertools.count()
    return lambda: f"random-{next(numbers)}"


def test_a_bare_name_gets_empty_data_and_user_and_the_receipt_time() -> None:
    assert normalize_event({"name": "app/signup"}, 0, NOW) == {
        "name": "app/signup",
        "data": {},
        "user": {},
        "ts": NOW,
    }


def test_every_field_is_kept_when_valid() -> None:
    raw = {"name": "a", "data": {"x": 1}, "user": {"u": 2}, "id": "k1", "ts": NOW - 5, "v": "2"}
    assert normalize_event(raw, 0, NOW) == raw


def test_null_fields_count_as_absent() -> None:
    raw = {"name": "a", "data": None, "user": None, "id": None, "ts": None, "v": None}
    assert normalize_event(raw, 0, NOW) == {"name": "a", "data": {}, "user": {}, "ts": NOW}


def test_zero_ts_and_empty_id_and_version_are_defaults_not_values() -> None:
    event = normalize_event({"name": "a", "ts": 0, "id": "", "v": ""}, 0, NOW)
    assert event == {"name": "a", "data": {}, "user": {}, "ts": NOW}


def test_unknown_top_level_keys_are_dropped() -> None:
    event = normalize_event({"name": "a", "extra": 1, "meta": {"sessions": []}}, 0, NOW)
    assert set(event) == {"name", "data", "user", "ts"}


def test_user_supplied_internal_metadata_is_stripped_from_data() -> None:
    raw = {"name": "a", "data": {"_inngest": {"fn_id": "victim"}, "keep": True}}
    assert normalize_event(raw, 0, NOW)["data"] == {"keep": True}
    assert raw["data"] == {"_inngest": {"fn_id": "victim"}, "keep": True}  # input untouched


@pytest.mark.parametrize("raw", [None, [], "app/event", 5, True])
def test_an_event_must_be_an_object(raw: Any) -> None:
    assert "JSON object" in rejection(raw).message


@pytest.mark.parametrize("raw", [{}, {"name": ""}, {"name": None}, {"data": {}}])
def test_a_name_is_required_in_go_s_words(raw: Any) -> None:
    assert rejection(raw).message == "event name is empty"


@pytest.mark.parametrize("name", [5, ["a"], {"n": 1}, True])
def test_the_name_must_be_a_string(name: Any) -> None:
    assert rejection({"name": name}).message == "event name must be a string"


def test_names_up_to_the_limit_are_accepted_and_longer_ones_rejected() -> None:
    assert normalize_event({"name": "n" * MAX_NAME_LENGTH}, 0, NOW)["name"]
    error = rejection({"name": "n" * (MAX_NAME_LENGTH + 1)})
    assert str(MAX_NAME_LENGTH) in error.message


@pytest.mark.parametrize(
    "name", ["inngest/function.finished", "inngest/anything", "Inngest/Function.Invoked"]
)
def test_the_inngest_prefix_is_reserved_in_any_case(name: str) -> None:
    assert "reserved" in rejection({"name": name}).message


def test_names_merely_containing_inngest_are_fine() -> None:
    assert normalize_event({"name": "app/inngest/x"}, 0, NOW)["name"] == "app/inngest/x"
    assert normalize_event({"name": "inngest"}, 0, NOW)["name"] == "inngest"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("data", [], "data must be a JSON object"),
        ("data", "x", "data must be a JSON object"),
        ("user", 1, "user must be a JSON object"),
        ("id", 5, "id must be a string"),
        ("v", 2, "version (v) must be a string"),
        ("ts", "1800000000000", "ts must be an integer"),
        ("ts", 1.8e12, "ts must be an integer"),
        ("ts", True, "ts must be an integer"),
    ],
)
def test_wrongly_typed_fields_are_rejected(field: str, value: Any, words: str) -> None:
    assert words in rejection({"name": "a", field: value}).message


def test_ts_bounds_are_1980_and_2100_inclusive_with_go_s_messages() -> None:
    assert normalize_event({"name": "a", "ts": MIN_TS_MS}, 0, NOW)["ts"] == MIN_TS_MS
    assert normalize_event({"name": "a", "ts": MAX_TS_MS}, 0, NOW)["ts"] == MAX_TS_MS
    before = rejection({"name": "a", "ts": MIN_TS_MS - 1}).message
    assert before == "timestamp is before Jan 1, 1980"
    assert rejection({"name": "a", "ts": MAX_TS_MS + 1}).message == "timestamp is after Jan 1, 2100"


def test_seconds_instead_of_milliseconds_and_negative_ts_are_rejected() -> None:
    assert "1980" in rejection({"name": "a", "ts": NOW // 1000}).message
    assert "1980" in rejection({"name": "a", "ts": -1}).message


def test_the_size_limit_is_inngest_s_absolute_maximum_of_3_mib() -> None:
    assert MAX_EVENT_BYTES == 3 * 1024 * 1024


def test_an_oversized_event_is_rejected_in_go_s_words() -> None:
    overhead = len('{"name":"a","data":{"blob":""}}')
    raw = {"name": "a", "data": {"blob": "x" * (MAX_EVENT_BYTES - overhead + 1)}}
    error = rejection(raw, index=3)
    assert error.index == 3
    sizes = f"Max {MAX_EVENT_BYTES} bytes / Size {MAX_EVENT_BYTES + 1} bytes"
    assert error.message == f"Event is over the max size: {sizes}"
    assert str(error).startswith("event 3: ")


def test_an_event_exactly_at_the_limit_is_accepted() -> None:
    overhead = len('{"name":"a","data":{"blob":""}}')
    raw = {"name": "a", "data": {"blob": "x" * (MAX_EVENT_BYTES - overhead)}}
    assert normalize_event(raw, 0, NOW)["data"] == raw["data"]


def test_size_counts_utf8_bytes_not_characters() -> None:
    raw = {"name": "a", "data": {"blob": "é" * (MAX_EVENT_BYTES // 2)}}
    assert "max size" in rejection(raw).message


def test_a_batch_is_judged_up_to_its_first_bad_event_which_keeps_the_ones_before() -> None:
    raws = [{"name": "ok"}, {"name": "ok", "data": {"i": 1}}, {"name": "inngest/x"}, 5]
    judged = normalize_events(raws, NOW, body_bytes=100)
    assert [e["name"] for e in judged.events] == ["ok", "ok"]
    assert judged.events[1]["data"] == {"i": 1}
    assert judged.error is not None and judged.error.index == 2
    assert judged.error.message == "event name is reserved for internal use: inngest/x"


def test_a_bad_first_event_leaves_nothing_to_store() -> None:
    judged = normalize_events([{"name": ""}, {"name": "ok"}], NOW, body_bytes=100)
    assert judged.events == []
    assert judged.error is not None and judged.error.index == 0


def test_a_batch_of_good_events_has_no_error() -> None:
    judged = normalize_events([{"name": "a"}, {"name": "b"}], NOW, body_bytes=100)
    assert [e["name"] for e in judged.events] == ["a", "b"] and judged.error is None


def test_a_batch_may_hold_the_maximum_count_and_the_ones_past_it_are_the_error() -> None:
    full = [{"name": "a"}] * MAX_EVENTS_PER_REQUEST
    judged = normalize_events(full, NOW, body_bytes=80_000)
    assert len(judged.events) == MAX_EVENTS_PER_REQUEST and judged.error is None
    # As Go's stream parser: the first MAX_EVENTS_PER_REQUEST pass, the next one is refused.
    over = normalize_events([*full, {"name": "a"}, {"name": "a"}], NOW, body_bytes=80_000)
    assert len(over.events) == MAX_EVENTS_PER_REQUEST
    assert over.error is not None and over.error.index == MAX_EVENTS_PER_REQUEST
    assert over.error.message == "Cannot have more than 5000 events in a batch"


def test_a_large_body_has_its_events_measured_one_by_one() -> None:
    big = {"name": "a", "data": {"blob": "x" * MAX_EVENT_BYTES}}
    judged = normalize_events([{"name": "a"}, big], NOW, body_bytes=MAX_EVENT_BYTES + 100)
    assert len(judged.events) == 1
    assert judged.error is not None and judged.error.index == 1
    assert "over the max size" in judged.error.message


def test_the_invocation_event_carries_the_target_and_replaces_user_metadata() -> None:
    raw = {"name": "ignored", "data": {"x": 1, "_inngest": {"fn_id": "other"}}, "id": "k"}
    event = invocation_event(raw, "app-fn", NOW)
    assert event["name"] == INVOKED_EVENT_NAME
    assert event["id"] == "k"
    assert event["ts"] == NOW
    assert event["user"] == {}
    assert event["data"]["x"] == 1
    meta = event["data"]["_inngest"]
    assert meta["fn_id"] == "app-fn"
    assert "correlation_id" not in meta
    assert raw["data"]["_inngest"] == {"fn_id": "other"}  # input untouched


@pytest.mark.parametrize(
    "raw", [[], "x", {"data": []}, {"ts": 1.5}, {"ts": MIN_TS_MS - 1}, {"id": 3}]
)
def test_invalid_invocation_bodies_are_rejected(raw: Any) -> None:
    with pytest.raises(InvalidEvent):
        invocation_event(raw, "app-fn", NOW)


def test_seeded_ids_are_deterministic_and_numbered_from_one() -> None:
    seed = parse_seed(SEED)
    assert seed is not None
    first = event_ids_for(3, SEED, counter_ids())
    assert first == event_ids_for(3, SEED, counter_ids())
    assert first == [seeded_event_id(seed, i) for i in (1, 2, 3)]
    assert first[0] == "01JQDAE4RQF8MBCR55T5AK4KXS"  # Go's documented example, position 1
    assert all(ULID.from_str(i).milliseconds == 1743130137367 for i in first)


def test_a_longer_send_with_the_same_seed_extends_the_same_ids() -> None:
    assert event_ids_for(5, SEED, counter_ids())[:2] == event_ids_for(2, SEED, counter_ids())


def test_invoke_numbers_its_single_event_from_zero() -> None:
    seed = parse_seed(SEED)
    assert seed is not None
    assert event_ids_for(1, SEED, counter_ids(), start=0) == [seeded_event_id(seed, 0)]


@pytest.mark.parametrize(
    "header", [None, "", "nonsense", "0,eii2YKXRVTJPuA==", "1743130137367,short", "1,2,3"]
)
def test_absent_or_malformed_seeds_fall_back_to_fresh_ids(header: str | None) -> None:
    assert event_ids_for(2, header, counter_ids()) == ["random-0", "random-1"]


def test_zero_events_need_no_ids() -> None:
    assert event_ids_for(0, SEED, counter_ids()) == []
    assert event_ids_for(0, None, counter_ids()) == []
