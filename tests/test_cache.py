"""The answer cache: key rules and entity planning (pure), then the real thing against Azurite."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import socket
import threading
import uuid
from datetime import UTC, datetime

import pytest
from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

import shared.cache as cache_module
from shared.cache import AnswerCache, cache_key, cache_key_hasher
from shared.cache_entity import (
    CHUNK_UTF16_UNITS,
    MAX_ENTITY_BYTES,
    MAX_PROPERTIES,
    BlobSpill,
    CorruptEntry,
    decode_payload,
    encode_payload,
    entity_size_bytes,
    plan_entity,
    split_utf16,
    table_payload,
    utf16_units,
)
from shared.config import Settings
from shared.errors import ConfigError
from tests.azurite import DEV_ACCOUNT, DEV_KEY

KEY = "ab" + "0" * 62
VALUE = {"analysis": "A cat on a mat.", "model": "gpt-4o", "usage": {"prompt_tokens": 10}}
KEY_FIELDS = {"deployment": "gpt4o", "prompt": "Describe this image", "detail": "low", "max_tokens": 1000}
needs_azurite = pytest.mark.azurite


def key_of(image: bytes = b"\x89PNG...", **changes):
    return cache_key(image, **{**KEY_FIELDS, **changes})


# -- cache_key ---------------------------------------------------------------------------


def test_key_is_a_stable_hex_sha256():
    key = key_of()
    assert key == key_of() and len(key) == 64 and int(key, 16) >= 0
    # Pinned: a change here silently invalidates every cached answer; bump CACHE_VERSION instead.
    assert key == "6c026f6bd98034b6aa10aa702cb081a04e4f0c734d4a28d374e6e2102e88bb29"


@pytest.mark.parametrize(
    "changes",
    [
        {"image": b"\x89PNG..!"},
        {"image": b""},
        {"deployment": "gpt4o-mini"},
        {"prompt": "Describe this image."},
        {"detail": "high"},
        {"max_tokens": 1001},
        {"max_tokens": None},
        {"extra": {"task": "ocr"}},
        {"extra": {"schema": "sha256:1"}},
    ],
)
def test_key_changes_with_every_field(changes):
    assert key_of(**changes) != key_of()


def test_key_changes_with_the_cache_version(monkeypatch):
    before = key_of()
    monkeypatch.setattr(cache_module, "CACHE_VERSION", "999")
    assert key_of() != before


def test_key_is_unambiguous():
    assert key_of(deployment="ab", prompt="c") != key_of(deployment="a", prompt="bc")
    assert key_of(prompt="ab", detail="c") != key_of(prompt="a", detail="bc")
    assert key_of(b"y", prompt="x") != key_of(b"", prompt="xy")
    assert key_of(b"", prompt="x") != key_of(b"x", prompt="")
    assert key_of(max_tokens=0) != key_of(max_tokens=None)
    assert key_of(extra={"a": "b", "c": "d"}) != key_of(extra={"a": 'b","c":"d'})
    assert key_of(extra={"a": "bc"}) != key_of(extra={"ab": "c"})


def test_key_extra_is_order_free_and_none_equals_empty():
    assert key_of(extra={"a": "1", "b": "2"}) == key_of(extra={"b": "2", "a": "1"})
    assert key_of(extra=None) == key_of(extra={}) == key_of()


def test_a_hasher_fed_the_bytes_in_chunks_gives_the_same_key():
    """Streamed uploads (shared.http.uploads.digested) feed the bytes as they arrive: the key must not change."""
    data = bytes(range(256)) * 4099
    fields = {**KEY_FIELDS, "extra": {"task": "ocr", "engine": "gpt-4o"}}
    hasher = cache_key_hasher(**fields)
    for start in range(0, len(data), 65_536):
        hasher.update(data[start:start + 65_536])
    assert hasher.hexdigest() == cache_key(data, **fields)
    pinned = cache_key_hasher(**KEY_FIELDS)
    pinned.update(b"\x89PNG...")
    assert pinned.hexdigest() == "6c026f6bd98034b6aa10aa702cb081a04e4f0c734d4a28d374e6e2102e88bb29"


def test_key_hashes_buffers_without_copying():
    data = bytes(range(256)) * 1000
    assert key_of(memoryview(data)) == key_of(bytearray(data)) == key_of(data)


# -- UTF-16 splitting and entity planning -------------------------------------------------


def test_utf16_units_counts_surrogate_pairs():
    assert utf16_units("a") == utf16_units("é") == utf16_units("中") == 1
    assert utf16_units("😀") == 2 and utf16_units("a😀b") == 4


@pytest.mark.parametrize(
    ("text", "expected_units"),
    [
        ("a" * 32_000, [32_000]),
        ("a" * 32_001, [32_000, 1]),
        ("é" * 32_001, [32_000, 1]),
        ("a" * 31_999 + "😀" + "b", [31_999, 3]),  # the emoji would straddle the cut: it moves
        ("😀" * 16_001, [32_000, 2]),
        ("", []),
    ],
)
def test_split_utf16_limits(text, expected_units):
    pieces = split_utf16(text)
    assert [utf16_units(piece) for piece in pieces] == expected_units
    assert "".join(pieces) == text
    for piece in pieces:
        piece.encode("utf-8")  # no lone surrogate anywhere


def test_split_utf16_random_texts_never_break_pairs():
    rng = random.Random(7)
    alphabet = ["a", "é", "中", "😀", "👩‍💻", "\n", '"']
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 300)))
        limit = rng.randrange(2, 40)
        pieces = split_utf16(text, limit)
        assert "".join(pieces) == text
        assert all(0 < utf16_units(piece) <= limit for piece in pieces)
        assert all(not 0xDC00 <= ord(piece[0]) <= 0xDFFF for piece in pieces)


def test_entity_size_follows_the_documented_formula():
    entity = {
        "PartitionKey": "ab", "RowKey": "abc",
        "s": "hé😀",  # 8 + 2*1 + (4 + 2*4)
        "n": 5,  # 8 + 2 + 4 (Int32)
        "big": 2**40,  # 8 + 2*3 + 8 (Int64)
        "b": True,  # 8 + 2 + 1
        "f": 1.5,  # 8 + 2 + 8
        "d": datetime(2024, 1, 1, tzinfo=UTC),  # 8 + 2 + 8
        "x": b"1234",  # 8 + 2 + (4 + 4)
    }
    assert entity_size_bytes(entity) == (4 + 2 * 5) + 22 + 14 + 22 + 11 + 18 + 18 + 18


def test_small_payload_is_one_chunk():
    payload = encode_payload(VALUE)
    entity = plan_entity(KEY, payload)
    assert isinstance(entity, dict)
    assert (entity["PartitionKey"], entity["RowKey"]) == ("ab", KEY)
    assert entity["chunks"] == 1 and entity["v000"] == payload and entity["storage"] == "table"
    assert entity["sha256"] == hashlib.sha256(payload.encode()).hexdigest()
    assert decode_payload(table_payload(entity), entity["sha256"]) == VALUE


def test_large_payload_still_fits_in_chunks():
    payload = "x" * 400_000
    entity = plan_entity(KEY, payload)
    assert isinstance(entity, dict)
    assert entity["chunks"] == 13 and table_payload(entity) == payload
    assert all(utf16_units(entity[f"v{i:03d}"]) <= CHUNK_UTF16_UNITS for i in range(13))
    assert entity_size_bytes(entity) <= MAX_ENTITY_BYTES


def test_payload_over_one_mebibyte_spills_to_a_blob_untruncated():
    payload = json.dumps({"analysis": "é😀" * 400_000}, ensure_ascii=False)
    plan = plan_entity(KEY, payload)
    assert isinstance(plan, BlobSpill)
    assert plan.payload == payload and plan.blob_name == f"{KEY}.json"
    assert plan.entity["storage"] == "blob" and plan.entity["blob"] == f"{KEY}.json"
    assert "v000" not in plan.entity and entity_size_bytes(plan.entity) < 1024


def test_size_budget_boundary():
    payload = "y" * 50_000
    entity = plan_entity(KEY, payload)
    assert isinstance(entity, dict)
    size = entity_size_bytes(entity)
    assert isinstance(plan_entity(KEY, payload, max_bytes=size), dict)
    assert isinstance(plan_entity(KEY, payload, max_bytes=size - 1), BlobSpill)


def test_property_budget_boundary():
    overhead = len(plan_entity(KEY, "z", chunk_units=10)) + 1 - 1  # + Timestamp - the one chunk
    most = MAX_PROPERTIES - overhead
    fits = plan_entity(KEY, "z" * 10 * most, chunk_units=10)
    assert isinstance(fits, dict) and fits["chunks"] == most and len(fits) + 1 == MAX_PROPERTIES
    over = plan_entity(KEY, "z" * 10 * (most + 1), chunk_units=10)
    assert isinstance(over, BlobSpill) and "properties" in over.reason


def test_more_than_250_chunks_spill_even_when_small():
    plan = plan_entity(KEY, "w" * 3_000, chunk_units=10)  # 300 chunks, about 30 KB
    assert isinstance(plan, BlobSpill)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: e.update(v000=e["v000"].replace("cat", "dog")),
        lambda e: e.pop("v000"),
        lambda e: e.update(chunks="1"),
        lambda e: e.update(sha256="0" * 64),
    ],
)
def test_tampered_entities_are_detected(tamper):
    entity = plan_entity(KEY, encode_payload(VALUE))
    tamper(entity)
    with pytest.raises(CorruptEntry):
        decode_payload(table_payload(entity), entity["sha256"])


def test_lone_surrogates_are_escaped_not_lost():
    value = {"analysis": "broken \ud800 text 😀"}
    payload = encode_payload(value)
    payload.encode("utf-8")
    assert json.loads(payload) == value
    assert "\\ud800" in payload and "😀" in payload  # only the lone surrogate is escaped


def test_redaction_of_errors():
    described = cache_module._describe(ValueError(f"boom AccountKey={DEV_KEY};x sig=abc&y=1\nmore"))
    assert DEV_KEY not in described and "abc" not in described and "more" not in described


# -- construction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "conn", ["UseDevelopmentStorage=true", "UseDevelopmentStorage=true;", "usedevelopmentstorage=TRUE"]
)
def test_development_storage_means_default_azurite_ports(conn):
    cache = AnswerCache.from_connection_string(conn)
    assert cache._table.url.startswith("http://127.0.0.1:10002/devstoreaccount1")
    assert cache._container.url.startswith("http://127.0.0.1:10000/devstoreaccount1/")
    assert cache.table_name == "visioncache" and cache.container_name == "vision-cache"
    cache.close()


def test_clients_get_short_timeouts_and_one_retry():
    cache = AnswerCache.from_connection_string("UseDevelopmentStorage=true")
    tables, blobs = cache._services
    config = tables._client._client._pipeline._transport.connection_config
    assert (config.timeout, config.read_timeout) == (2.0, 5.0)
    config = blobs._pipeline._transport.connection_config
    assert (config.timeout, config.read_timeout) == (2.0, 5.0)
    retries = [p for p in blobs._pipeline._impl_policies if type(p).__name__ == "LinearRetry"]
    assert retries and retries[0].total_retries == 1 and retries[0].backoff < 1


class FakeCredential:
    def get_token(self, *scopes, **kwargs):
        raise AssertionError("no network in this test")


def test_from_settings():
    settings = Settings(storage_connection_string="UseDevelopmentStorage=true", cache_table="t1",
                        cache_container="c-1", cache_ttl_seconds=60)
    cache = AnswerCache.from_settings(settings)
    assert cache is not None
    assert (cache.table_name, cache.container_name, cache.ttl_seconds) == ("t1", "c-1", 60)
    assert AnswerCache.from_settings(Settings()) is None
    keyless = AnswerCache.from_settings(
        Settings(table_service_uri="https://acct.table.core.windows.net"), credential=FakeCredential
    )
    assert keyless is not None and keyless._container.url.startswith("https://acct.blob.core.windows.net/")
    with pytest.raises(ConfigError) as caught:
        AnswerCache.from_settings(Settings(storage_connection_string="AccountName=x;garbage"))
    assert caught.value.setting == "AzureWebJobsStorage" and "garbage" not in str(caught.value)


# -- against Azurite -----------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def names():
    suffix = uuid.uuid4().hex[:16]
    return {"table_name": f"t{suffix}", "container_name": f"c-{suffix}"}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def cache(azurite, names, clock):
    answer_cache = AnswerCache.from_connection_string(
        azurite.connection_string, clock=clock, ttl_seconds=3600, **names
    )
    yield answer_cache
    answer_cache.close()


@pytest.fixture
def table(azurite, names):
    """Direct access to the cache's table, to inspect and tamper with entities."""
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service.get_table_client(names["table_name"])


@pytest.fixture
def container(azurite, names):
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service.get_container_client(names["container_name"])


def warnings_of(caplog):
    return [r for r in caplog.records if r.name == "shared.cache" and r.levelno == logging.WARNING]


def mixed_text(chars: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(["a", "é", "中", "😀", "👩‍💻", "\n", '"', "\\", " "]) for _ in range(chars))


@needs_azurite
def test_miss_put_hit(cache):
    assert cache.get(KEY) is None
    cache.put(KEY, VALUE)
    assert cache.get(KEY) == VALUE
    assert cache.ping() is True and cache.last_error is None and cache.errors == 0


@needs_azurite
async def test_async_wrappers(cache):
    assert await cache.aget(KEY) is None
    await cache.aput(KEY, VALUE)
    assert await cache.aget(KEY) == VALUE
    assert await cache.aping() is True


@needs_azurite
def test_ttl_is_enforced_on_read(cache, clock, table):
    cache.put(KEY, VALUE)
    clock.now += 3599
    assert cache.get(KEY) == VALUE
    clock.now += 1
    assert cache.get(KEY) is None
    with pytest.raises(ResourceNotFoundError):
        table.get_entity("ab", KEY)  # expired entries are deleted on the way


@needs_azurite
def test_mixed_unicode_round_trips_in_chunks(cache, table):
    value = {"analysis": mixed_text(100_000), "notes": ["😀" * 10, "\ud800 lone"]}
    cache.put(KEY, value)
    assert cache.get(KEY) == value
    entity = table.get_entity("ab", KEY)
    assert entity["storage"] == "table" and entity["chunks"] >= 3


@needs_azurite
def test_emoji_on_a_chunk_boundary_round_trips(cache, table):
    prefix = len('{"analysis":"')
    value = {"analysis": "a" * (CHUNK_UTF16_UNITS - 1 - prefix) + "😀" * 3}
    cache.put(KEY, value)
    assert cache.get(KEY) == value
    assert table.get_entity("ab", KEY)["v001"].startswith("😀")


@needs_azurite
def test_two_mebibytes_spill_to_a_blob_and_back(cache, clock, table, container):
    value = {"analysis": mixed_text(1_100_000, seed=2)}
    assert len(encode_payload(value).encode()) > 2 * 1024 * 1024
    cache.put(KEY, value)
    assert cache.get(KEY) == value
    entity = table.get_entity("ab", KEY)
    assert entity["storage"] == "blob" and "v000" not in entity
    assert container.get_blob_client(f"{KEY}.json").exists()
    clock.now += 3600
    assert cache.get(KEY) is None
    assert not container.get_blob_client(f"{KEY}.json").exists()


@needs_azurite
def test_overwrites_leave_no_stale_chunks(cache, table):
    cache.put(KEY, {"analysis": "x" * 100_000})
    assert table.get_entity("ab", KEY)["chunks"] == 4
    cache.put(KEY, VALUE)
    entity = table.get_entity("ab", KEY)
    assert entity["chunks"] == 1 and "v001" not in entity
    assert cache.get(KEY) == VALUE


@needs_azurite
@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: e.update(v000=e["v000"].replace("a", "b")),
        lambda e: e.pop("v001"),
        lambda e: e.update(chunks=5),
        lambda e: e.pop("expires_at"),
    ],
    ids=["hash-mismatch", "missing-chunk", "wrong-count", "no-expiry"],
)
def test_corrupt_entity_is_a_miss(cache, table, caplog, tamper):
    cache.put(KEY, {"analysis": "a" * 40_000})
    entity = dict(table.get_entity("ab", KEY))
    tamper(entity)
    table.upsert_entity(entity, mode="replace")
    assert cache.get(KEY) is None
    assert any("corrupt" in r.getMessage() for r in warnings_of(caplog))


@needs_azurite
@pytest.mark.parametrize("payload", ["not json {", "[1, 2]"])
def test_stored_non_object_is_a_miss(cache, clock, table, caplog, payload):
    cache.ensure_table()
    meta = {"expires_at": datetime.fromtimestamp(clock.now + 60, UTC)}
    table.upsert_entity(plan_entity(KEY, payload, meta=meta))
    assert cache.get(KEY) is None
    assert any("corrupt" in r.getMessage() for r in warnings_of(caplog))


@needs_azurite
def test_missing_or_altered_blob_is_a_miss(cache, container, caplog):
    cache.put(KEY, {"analysis": "b" * 1_000_000})
    blob = container.get_blob_client(f"{KEY}.json")
    blob.upload_blob(b'{"analysis":"forged"}', overwrite=True)
    assert cache.get(KEY) is None
    blob.delete_blob()
    assert cache.get(KEY) is None
    assert len([r for r in warnings_of(caplog) if "corrupt" in r.getMessage()]) == 2


@needs_azurite
@pytest.mark.parametrize("status", ["failed", "content_filtered"])
def test_failures_are_not_cached(cache, table, status):
    cache.put(KEY, {**VALUE, "status": status})
    assert cache.get(KEY) is None
    with pytest.raises(ResourceNotFoundError):
        table.get_entity("ab", KEY)


@needs_azurite
def test_unserialisable_value_is_skipped(cache, caplog):
    cache.put(KEY, {"analysis": object()})
    assert cache.get(KEY) is None and cache.errors == 0
    assert warnings_of(caplog)


@needs_azurite
def test_table_creation_is_retried_after_an_outage(cache, monkeypatch, caplog):
    cache.cooldown_seconds = 0
    real_create = cache._table.create_table
    calls = []

    def flaky_create(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ServiceRequestError("connection refused")
        return real_create(**kwargs)

    monkeypatch.setattr(cache._table, "create_table", flaky_create)
    assert cache.get(KEY) is None
    assert cache.errors == 1 and "ServiceRequestError" in cache.last_error and len(warnings_of(caplog)) == 1
    cache.put(KEY, VALUE)
    assert cache.get(KEY) == VALUE and cache.last_error is None and len(calls) == 2


def dead_connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};TableEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
    )


class Storage:
    """A storage account that is down: it counts the connections it gets and either drops each at once
    (``hang=False``: connection reset) or holds it open without a word (``hang=True``: a hung account)."""

    def __init__(self, *, hang: bool) -> None:
        self.hang, self.held, self.connections = hang, [], 0
        self._counted = threading.Condition()
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._sock.settimeout(0.05)  # so the accept loop sees ``_stopping``
        self.port = self._sock.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with self._counted:
                self.connections += 1
                self._counted.notify_all()
            if self.hang:
                self.held.append(conn)
            else:
                conn.close()

    def saw(self, count: int) -> bool:
        """Whether ``count`` connections arrived (the accepting thread may lag the client a little)."""
        with self._counted:
            return self._counted.wait_for(lambda: self.connections >= count, timeout=30)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def storage_down():
    made: list[Storage] = []

    def make(*, hang: bool) -> Storage:
        made.append(Storage(hang=hang))
        return made[-1]

    yield make
    for storage in made:
        storage.close()


def test_storage_down_is_a_quick_miss(storage_down, caplog):
    """Each call tries at most twice (one retry), then answers a miss: no SDK backoff ladder per request."""
    caplog.set_level(logging.WARNING)
    storage = storage_down(hang=False)
    cache = AnswerCache.from_connection_string(dead_connection_string(storage.port), cooldown_seconds=0)
    assert cache.get(KEY) is None
    cache.put(KEY, VALUE)
    cache.put(KEY, {"analysis": "c" * 2_000_000})
    assert len(warnings_of(caplog)) == 3 and cache.errors == 3
    assert 3 <= storage.connections <= 3 * 2
    assert cache.last_error and isinstance(cache.ping(), str)
    assert DEV_KEY not in caplog.text and DEV_KEY not in cache.last_error
    cache.close()


def test_slow_storage_times_out_then_stays_out_of_the_way(storage_down, caplog):
    storage = storage_down(hang=True)
    cache = AnswerCache.from_connection_string(
        dead_connection_string(storage.port), connection_timeout=0.5, read_timeout=0.5, cooldown_seconds=60
    )
    assert cache.get(KEY) is None
    assert len(warnings_of(caplog)) == 1 and cache.errors == 1
    assert storage.saw(1)
    tried = storage.connections
    assert tried <= 2  # one try, at most one retry
    assert cache.get(KEY) is None
    cache.put(KEY, VALUE)
    assert cache.errors == 1 and storage.connections == tried  # cooling down: no calls at all
    assert isinstance(cache.ping(), str) and cache.errors == 2  # health checks always look
    assert storage.saw(tried + 1)
    cache.close()
