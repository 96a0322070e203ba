"""Hostile inputs through the HTTP API: never a 500, never a hang, never a model call for junk."""

from __future__ import annotations

import json
import random
import struct
import zlib

import pytest

ACCEPTABLE = {200, 413, 415, 422}


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims any size, with a tiny (wrong) IDAT: a classic bomb header."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def mutations(corpus) -> list[tuple[str, bytes]]:
    rng = random.Random(20261128)
    cases: list[tuple[str, bytes]] = []
    for name in ("rocket.jpg", "chelsea.png", "no_time_for_that_tiny.gif", "multipage_rgb.tif", "logo.png"):
        data = (corpus / name).read_bytes()
        for fraction in (0.02, 0.3, 0.7, 0.99):
            cases.append((f"{name}-cut-{fraction}", data[: max(1, int(len(data) * fraction))]))
        for flips in (1, 20):
            mutated = bytearray(data)
            for _ in range(flips):
                position = rng.randrange(8, len(mutated))
                mutated[position] ^= 1 << rng.randrange(8)
            cases.append((f"{name}-flip-{flips}", bytes(mutated)))
    cases += [
        ("png-100k-square", png_with_header(100_000, 100_000)),
        ("png-max-int", png_with_header(2**31 - 1, 2**31 - 1)),
        ("png-zero", png_with_header(0, 0)),
        ("gif-huge-screen", b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00;"),
        ("bmp-header-only", b"BM" + b"\x00" * 60),
        ("jpeg-soi-only", b"\xff\xd8\xff"),
        ("webp-riff-only", b"RIFF\x00\x00\x00\x00WEBPVP8 "),
        ("tiff-header-only", b"II*\x00\x08\x00\x00\x00"),
        ("random", bytes(rng.randrange(256) for _ in range(4096))),
        ("svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
        ("zip", b"PK\x03\x04" + b"\x00" * 100),
    ]
    return cases


@pytest.mark.timeout(180)
async def test_hostile_inputs_get_clear_answers(make_settings, make_client, aoai, corpus):
    client = await make_client(make_settings())
    outcomes = {}
    for name, payload in mutations(corpus):
        response = await client.post("/api/analyze", content=payload)
        outcomes[name] = response.status_code
        assert response.status_code in ACCEPTABLE, (name, response.status_code, response.text)
        if response.status_code != 200:
            assert response.headers["content-type"].startswith("application/problem+json")
    # Pure junk and bomb headers never reach the model.
    for name in ("png-100k-square", "png-max-int", "gif-huge-screen", "random", "svg", "zip", "jpeg-soi-only"):
        assert outcomes[name] in {413, 415, 422}, name
    assert len(aoai.requests) == sum(1 for status in outcomes.values() if status == 200)


@pytest.mark.timeout(60)
async def test_hostile_multipart_bodies(make_settings, make_client, aoai):
    client = await make_client(make_settings())
    bodies = [
        b"--x\r\nContent-Disposition: form-data; name=file\r\n\r\nno end boundary",
        b"not multipart at all",
        b"",
        b"--x--\r\n",
    ]
    for body in bodies:
        response = await client.post(
            "/api/analyze", content=body, headers={"content-type": "multipart/form-data; boundary=x"}
        )
        assert response.status_code in {400, 415, 422}, (body, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    response = await client.post("/api/analyze", content=b"x", headers={"content-type": "multipart/form-data"})
    assert response.status_code == 400


@pytest.mark.timeout(120)
async def test_hostile_extraction_and_multi_image_requests(make_settings, make_client, aoai, corpus):
    """The structured and multi-image routes answer junk with 4xx problems, never a 500."""
    client = await make_client(make_settings())
    png = (corpus / "chelsea.png").read_bytes()
    deep: dict = {"type": "object", "properties": {}}
    node = deep
    for _ in range(12):
        child = {"type": "object", "properties": {}}
        node["properties"]["x"] = child
        node = child
    cases = [
        ("/api/extract/invoice", {"content": b"\x00garbage"}),
        ("/api/extract/table", {"content": b""}),
        ("/api/extract", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("/api/extract", {"json": {"image": "%%%not-base64%%%", "schema": {"type": "object"}}}),
        ("/api/extract", {"json": {"image": 42, "schema": "no"}}),
        ("/api/extract", {"json": ["a", "list"]}),
        ("/api/extract", {"json": {"schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}),
        ("/api/extract", {"files": {"file": ("a.png", png, "image/png")}, "data": {"schema": "{broken"}}),
        ("/api/extract", {"files": {"file": ("a.png", png, "image/png")}, "data": {"schema": json.dumps(deep)}}),
        ("/api/extract", {"files": {"file": ("a.png", png, "image/png")},
                          "data": {"schema": json.dumps({"type": "array", "items": {"type": "string"}})}}),
        ("/api/compare", {"files": {"file": ("a.png", png, "image/png")}}),
        ("/api/compare", {"content": png}),
        ("/api/compare", {"files": [("file", ("a.png", png, "image/png")),
                                    ("file", ("b.txt", b"text", "text/plain"))]}),
        ("/api/sequence", {"files": [("file", ("a.png", b"\x89PNG\r\n\x1a\n", "image/png"))] * 2}),
        ("/api/extract/invoice?detail=ultra", {"content": png}),
        ("/api/extract/invoice?max_tokens=-5", {"content": png}),
    ]
    for path, kwargs in cases:
        response = await client.post(path, **kwargs)
        assert 400 <= response.status_code < 500, (path, kwargs.keys(), response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), (path, response.text)
    assert aoai.requests == []
