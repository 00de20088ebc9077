import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from multidict import CIMultiDict

from shadow.sidecar.sampling import (
    StickySampler,
    bucket_of,
    forced_decision,
    hash_user_key,
    header_value,
    user_key,
)

# --- user_key ------------------------------------------------------------------------------------------


def test_body_user_wins_over_header_and_client():
    headers = {"X-User-Id": "from-header"}
    assert user_key({"user": "alice"}, headers, "X-User-Id", "10.0.0.1") == ("alice", "user")


def test_header_wins_over_client_address():
    assert user_key({"model": "m"}, {"X-User-Id": "bob"}, "X-User-Id", "10.0.0.1") == ("bob", "header")


def test_client_address_is_the_last_resort():
    assert user_key({"model": "m"}, {}, "X-User-Id", "10.0.0.1") == ("10.0.0.1", "client")
    assert user_key(None, {}, "X-User-Id", "10.0.0.1") == ("10.0.0.1", "client")


def test_no_source_at_all_gives_the_empty_key():
    assert user_key(None, {}, "X-User-Id", None) == ("", "client")


@pytest.mark.parametrize("value", ["", "   ", None, 42, {"id": "x"}, ["alice"]])
def test_body_user_must_be_a_non_empty_string(value):
    assert user_key({"user": value}, {"X-User-Id": "bob"}, "X-User-Id", "10.0.0.1") == ("bob", "header")


def test_blank_header_falls_through_to_client():
    assert user_key({}, {"X-User-Id": "  "}, "X-User-Id", "10.0.0.1") == ("10.0.0.1", "client")


def test_values_are_stripped():
    assert user_key({"user": " alice "}, {}, "X-User-Id", None) == ("alice", "user")
    assert user_key({}, {"X-User-Id": " bob\t"}, "X-User-Id", None) == ("bob", "header")


@pytest.mark.parametrize("sent_as", ["x-user-id", "X-USER-ID", "X-User-Id"])
def test_header_lookup_is_case_insensitive_for_plain_dicts(sent_as):
    assert user_key({}, {sent_as: "carol"}, "X-User-Id", None) == ("carol", "header")


def test_header_lookup_works_with_aiohttp_headers():
    headers = CIMultiDict({"x-user-id": "dave"})
    assert user_key({}, headers, "X-User-Id", None) == ("dave", "header")
    assert header_value(headers, "X-USER-ID") == "dave"


def test_empty_header_name_disables_the_header_source():
    assert user_key({}, {"": "x"}, "", "10.0.0.1") == ("10.0.0.1", "client")


def test_body_that_is_not_an_object_is_ignored():
    assert user_key(["user"], {}, "X-User-Id", "10.0.0.1") == ("10.0.0.1", "client")  # type: ignore[arg-type]


# --- hashing and buckets -------------------------------------------------------------------------------


def test_hash_user_key_is_sha256_hex():
    assert hash_user_key("alice") == hashlib.sha256(b"alice").hexdigest()
    assert len(hash_user_key("")) == 64
    assert hash_user_key("张三") == hashlib.sha256("张三".encode()).hexdigest()


def test_hash_user_key_with_a_secret_is_keyed_and_stable():
    keyed = hash_user_key("10.0.0.7", "s3cret")
    assert keyed == hash_user_key("10.0.0.7", "s3cret") != hash_user_key("10.0.0.7")
    assert keyed != hash_user_key("10.0.0.7", "other")


def test_bucket_is_in_range_and_deterministic():
    for key in ("alice", "bob", "", "张三", "10.0.0.1"):
        bucket = bucket_of(key)
        assert 0 <= bucket < 10_000
        assert bucket_of(key) == bucket
    assert 0 <= bucket_of("alice", buckets=7) < 7


def test_bucket_pins_known_values():
    # Pinned so a change of algorithm (which would reshuffle every user's sample) cannot go unnoticed.
    assert bucket_of("alice") == 207
    assert bucket_of("张三") == 8844
    assert bucket_of("") == 1652
    assert bucket_of("alice") == int.from_bytes(hashlib.sha256(b"alice").digest()[:8], "big") % 10_000


def test_bucket_is_the_same_in_another_process_with_another_hash_seed():
    keys = ["alice", "bob", "张三", "10.0.0.1"]
    code = f"from shadow.sidecar.sampling import bucket_of; print([bucket_of(k) for k in {keys!r}])"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.stdout.strip() == str([bucket_of(k) for k in keys])


def test_bucket_count_must_be_positive():
    with pytest.raises(ValueError, match="buckets"):
        bucket_of("alice", buckets=0)


# --- StickySampler -------------------------------------------------------------------------------------


def test_same_key_always_gets_the_same_decision():
    sampler = StickySampler(0.2)
    keys = [f"user-{i}" for i in range(500)]
    first = [sampler.decide(key) for key in keys]
    assert [sampler.decide(key) for key in keys] == first
    assert [StickySampler(0.2).decide(key) for key in keys] == first
    assert any(first) and not all(first)


def test_share_of_mirrored_keys_matches_the_rate():
    rng = random.Random(20240115)
    keys = [f"{rng.getrandbits(64):016x}" for _ in range(10_000)]
    sampler = StickySampler(0.2)
    share = sum(sampler.decide(key) for key in keys) / len(keys)
    assert share == pytest.approx(0.2, abs=0.02)


def test_rate_zero_never_and_one_always():
    keys = [f"user-{i}" for i in range(2_000)]
    assert not any(StickySampler(0.0).decide(key) for key in keys)
    assert all(StickySampler(1.0).decide(key) for key in keys)


def test_raising_the_rate_keeps_the_users_already_sampled():
    keys = [f"user-{i}" for i in range(2_000)]
    low = {key for key in keys if StickySampler(0.1).decide(key)}
    high = {key for key in keys if StickySampler(0.3).decide(key)}
    assert low < high


@pytest.mark.parametrize("rate", [-0.1, 1.01, float("nan"), float("inf")])
def test_rate_outside_zero_to_one_is_refused(rate):
    with pytest.raises(ValueError, match="between 0 and 1"):
        StickySampler(rate)


# --- forced_decision -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["on", "1", "true", "yes", "ON", " True ", "Yes"])
def test_force_on(value):
    assert forced_decision({"X-Shadow-Mirror": value}, "X-Shadow-Mirror") is True


@pytest.mark.parametrize("value", ["off", "0", "false", "no", "OFF", " False"])
def test_force_off(value):
    assert forced_decision({"X-Shadow-Mirror": value}, "X-Shadow-Mirror") is False


@pytest.mark.parametrize("value", ["", "maybe", "2", "onn", "enable"])
def test_unrecognised_force_value_is_ignored(value):
    assert forced_decision({"X-Shadow-Mirror": value}, "X-Shadow-Mirror") is None


def test_absent_force_header_is_none():
    assert forced_decision({}, "X-Shadow-Mirror") is None
    assert forced_decision({"X-Shadow-Mirror": "on"}, "") is None


def test_force_header_is_case_insensitive():
    assert forced_decision({"x-shadow-mirror": "on"}, "X-Shadow-Mirror") is True
    assert forced_decision(CIMultiDict({"X-SHADOW-MIRROR": "0"}), "X-Shadow-Mirror") is False
