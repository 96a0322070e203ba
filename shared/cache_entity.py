"""How an answer fits a Table Storage entity: pure arithmetic over JSON text, no I/O.

A cached answer can be larger than one string property (32K UTF-16 units) or one entity (1 MiB,
255 properties), and Azurite enforces neither limit exactly, so the rules are here, in code, with
tests of their own: :func:`plan_entity` splits the JSON over ``vNNN`` properties with a hash, or
says it must go to a blob (:class:`BlobSpill`); :func:`decode_payload` and :func:`table_payload`
refuse anything that does not check out (:class:`CorruptEntry`), which the cache treats as a miss.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

#: A string property holds at most 32K UTF-16 code units (64 KiB); stay a little under.
CHUNK_UTF16_UNITS = 32_000
#: An entity is at most 1 MiB and 255 properties (PartitionKey, RowKey, Timestamp included).
#: Azurite enforces neither exactly, so these safe budgets are checked here.
MAX_ENTITY_BYTES = 960 * 1024
MAX_PROPERTIES = 250

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def utf16_units(text: str) -> int:
    """Length as Table Storage counts it: UTF-16 code units (an emoji is two)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def split_utf16(text: str, limit: int = CHUNK_UTF16_UNITS) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` UTF-16 units, never inside a surrogate pair.

    Cutting the UTF-16 encoding makes the count exact and fast; a cut that would end a
    piece on a high surrogate moves back one unit, so pieces are whole Python characters.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2 UTF-16 units")
    data = text.encode("utf-16-le", "surrogatepass")
    pieces: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + 2 * limit, len(data))
        if end < len(data) and 0xD800 <= int.from_bytes(data[end - 2 : end], "little") <= 0xDBFF:
            end -= 2
        pieces.append(data[start:end].decode("utf-16-le", "surrogatepass"))
        start = end
    return pieces


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return 4 + 2 * utf16_units(value)
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return 4 if -(2**31) <= value < 2**31 else 8
    if isinstance(value, bytes | bytearray):
        return 4 + len(value)
    return 16 if isinstance(value, UUID) else 8  # Double, DateTime, Int64


def entity_size_bytes(entity: Mapping[str, Any]) -> int:
    """Entity size per Microsoft's documented formula (the service's 1 MiB limit applies to it).

    ``4 + len(PartitionKey + RowKey) * 2 + sum(8 + len(name) * 2 + sizeof(value))`` with a
    string ``4 + len_utf16 * 2``, Int32 4, Int64/Double/DateTime 8, Bool 1, Guid 16 and
    Binary ``4 + len``.
    """
    size = 4 + 2 * utf16_units(str(entity.get("PartitionKey", "")) + str(entity.get("RowKey", "")))
    for name, value in entity.items():
        if name not in ("PartitionKey", "RowKey"):
            size += 8 + 2 * utf16_units(name) + _value_size(value)
    return size


@dataclass(frozen=True)
class BlobSpill:
    """Too big for one entity: the payload goes to blob ``blob_name``, ``entity`` points at it."""

    blob_name: str
    payload: str
    entity: dict[str, Any]
    reason: str


def plan_entity(
    key: str, payload_json: str, *, meta: Mapping[str, Any] | None = None,
    chunk_units: int = CHUNK_UTF16_UNITS, max_bytes: int = MAX_ENTITY_BYTES,
    max_properties: int = MAX_PROPERTIES,
) -> dict[str, Any] | BlobSpill:
    """The entity storing ``payload_json`` under ``key``, or a :class:`BlobSpill` if it won't fit.

    PartitionKey is the key's first two hex characters, RowKey the key. Lookups are point
    reads either way, but SHA-256 fills the 256 partitions evenly so the service can spread
    them over servers, and a clean-up job can sweep expired rows partition by partition
    with batched deletes (a batch shares one PartitionKey), which one partition per key
    would rule out. The JSON is split over ``v000``, ``v001``... with ``chunks`` and a
    ``sha256`` of the payload to detect corruption; nothing is ever truncated.
    """
    base: dict[str, Any] = {"PartitionKey": key[:2], "RowKey": key, **(meta or {})}
    base["sha256"] = hashlib.sha256(payload_json.encode("utf-8")).hexdigest()
    pieces = split_utf16(payload_json, chunk_units)
    entity = {**base, "storage": "table", "chunks": len(pieces)}
    entity.update({f"v{index:03d}": piece for index, piece in enumerate(pieces)})
    size, properties = entity_size_bytes(entity), len(entity) + 1  # + the service's Timestamp
    if size <= max_bytes and properties <= max_properties:
        return entity
    reason = f"{size} bytes in {properties} properties, over {max_bytes} bytes or {max_properties} properties"
    pointer = {**base, "storage": "blob", "blob": f"{key}.json"}
    return BlobSpill(blob_name=f"{key}.json", payload=payload_json, entity=pointer, reason=reason)


class CorruptEntry(ValueError):
    """A stored entry cannot be trusted (hash mismatch, missing chunk, bad JSON): it is a miss."""


def encode_payload(value: Mapping[str, Any]) -> str:
    """Compact JSON keeping non-ASCII text as is (``\\uXXXX`` costs 6 units), except lone
    surrogates, which cannot travel as UTF-8 and are escaped (``json.loads`` restores them)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def decode_payload(payload: str | bytes, expected_sha256: Any) -> dict[str, Any]:
    """The stored dict, once its hash checks out; raises :class:`CorruptEntry`."""
    raw = payload.encode("utf-8") if isinstance(payload, str) else payload
    if hashlib.sha256(raw).hexdigest() != expected_sha256:
        raise CorruptEntry("sha256 mismatch")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptEntry(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CorruptEntry("payload is not a JSON object")
    return value


def table_payload(entity: Mapping[str, Any]) -> str:
    """The ``vNNN`` chunks of a table-stored entry, rejoined; raises :class:`CorruptEntry`."""
    chunks = entity.get("chunks")
    if type(chunks) is not int or chunks < 0:
        raise CorruptEntry("no valid chunk count")
    pieces = [entity.get(f"v{index:03d}") for index in range(chunks)]
    if not all(isinstance(piece, str) for piece in pieces):
        raise CorruptEntry("a chunk is missing")
    return "".join(pieces)
