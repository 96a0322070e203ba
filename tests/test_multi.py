"""Multi-image requests against the Azure OpenAI double: labelled compare, limits (count, bytes, tokens),
sequence analysis with a structured synthesis, caching on Azurite, the HTTP routes and the CLI."""

from __future__ import annotations

import argparse
import json

import httpx
import pytest

from shared.cli.multi import add_compare_parser, add_sequence_parser
from shared.errors import InvalidParameter, PayloadTooLarge, UnsupportedImage
from shared.multi import COMPARE_DECODE_CONCURRENCY, TotalTooLarge, compare, sequence
from tests.aoai_double import Reply

SYNTHESIS = {"common_themes": ["a motorcycle"], "changes": ["[Image 2] is seen from the right"],
             "key_insights": ["same bike"], "recommendations": ["photograph the front too"]}


@pytest.fixture
def images(corpus) -> dict[str, bytes]:
    return {name: (corpus / f"{name}.png").read_bytes() for name in ("motorcycle_left", "motorcycle_right", "chelsea")}


def _synthesis_responder(rec):
    """Structured synthesis for the text-only call; the default analysis text for the per-image ones."""
    return Reply.ok(json.dumps(SYNTHESIS)) if rec.body.get("response_format") else None


async def test_compare_sends_labelled_images_in_order_at_the_requested_detail(make_settings, make_analyzer, aoai,
                                                                             images):
    aoai.enqueue(Reply.ok("[Image 3] is a cat; the others are one motorcycle.", prompt_tokens=400))
    data = [images["motorcycle_left"], images["motorcycle_right"], images["chelsea"]]
    result = await compare(make_analyzer(make_settings()), data, prompt="Which one differs?", detail="low")

    [request] = aoai.requests
    content = request.body["messages"][-1]["content"]
    assert [part["type"] for part in content] == ["text", *(["text", "image_url"] * 3)]
    assert content[0]["text"] == "Which one differs?"
    assert [content[i]["text"] for i in (1, 3, 5)] == ["[Image 1]", "[Image 2]", "[Image 3]"]
    assert [image.detail for image in request.images] == ["low"] * 3
    assert "[Image 1] to [Image 3]" in request.body["messages"][0]["content"]

    assert result["analysis"].startswith("[Image 3]")
    shown = result["images"]
    assert [(i["index"], i["label"], i["detail"]) for i in shown] == [
        (1, "[Image 1]", "low"), (2, "[Image 2]", "low"), (3, "[Image 3]", "low")]
    assert [(i["width"], i["height"]) for i in shown] == [(512, 345), (512, 345), (451, 300)]
    assert [i["estimated_tokens"] for i in shown] == [85, 85, 85]
    assert [i["original_bytes"] for i in shown] == [len(d) for d in data]
    assert result["totals"] == {"images": 3, "bytes": sum(map(len, data)),
                                "sent_bytes": sum(i["bytes"] for i in shown), "estimated_image_tokens": 255}
    assert result["usage"]["prompt_tokens"] == 400 and result["cached"] is False


async def test_compare_chooses_detail_per_image_when_none_is_given(make_settings, make_analyzer, aoai, images,
                                                                  corpus):
    hubble = (corpus / "hubble_deep_field.jpg").read_bytes()
    result = await compare(make_analyzer(make_settings()), [images["chelsea"], hubble])
    assert [image.detail for image in aoai.last_request.images] == ["low", "auto"]  # 451x300, then 1000x872
    assert [i["detail"] for i in result["images"]] == ["low", "auto"]


async def test_compare_decodes_at_most_a_few_images_at_once(make_settings, make_analyzer, aoai, corpus,
                                                           monkeypatch):
    """Ten full-size bitmaps at once would be ten times the peak memory: the decodes take turns."""
    analyzer = make_analyzer(make_settings())
    real_prepare, decoding, peak = analyzer.prepare, 0, 0

    async def counted_prepare(*args, **kwargs):
        nonlocal decoding, peak
        decoding += 1
        peak = max(peak, decoding)
        try:
            return await real_prepare(*args, **kwargs)
        finally:
            decoding -= 1

    monkeypatch.setattr(analyzer, "prepare", counted_prepare)
    names = sorted(p.name for p in corpus.iterdir() if p.suffix in {".png", ".jpg"})[:5]
    data = [(corpus / name).read_bytes() for name in names] * 2
    result = await compare(analyzer, data, detail="low")
    assert COMPARE_DECODE_CONCURRENCY == 2 and peak == COMPARE_DECODE_CONCURRENCY
    assert [i["original_bytes"] for i in result["images"]] == [len(d) for d in data]  # still in upload order
    assert len(aoai.last_request.images) == 10


@pytest.mark.parametrize("count", [1, 3])
async def test_image_count_outside_2_to_n_is_400(make_settings, make_analyzer, aoai, images, count):
    analyzer = make_analyzer(make_settings(VISION_MAX_IMAGES="2"))
    with pytest.raises(InvalidParameter) as caught:
        await compare(analyzer, [images["chelsea"]] * count)
    assert caught.value.parameter == "images"
    assert ("VISION_MAX_IMAGES" in caught.value.detail) is (count == 3)
    assert aoai.requests == []


async def test_compare_is_capped_by_the_providers_images_per_request(make_settings, make_analyzer, aoai, images):
    analyzer = make_analyzer(make_settings(VISION_MAX_IMAGES="12"))
    with pytest.raises(InvalidParameter, match=r"at most 10 images .*azure_openai provider"):
        await compare(analyzer, [images["chelsea"]] * 11, detail="low")
    assert aoai.requests == []


async def test_total_bytes_over_the_limit_is_413(make_settings, make_analyzer, aoai, images):
    analyzer = make_analyzer(make_settings(VISION_MAX_TOTAL_BYTES="1000000"))
    with pytest.raises(TotalTooLarge) as caught:
        await compare(analyzer, [images["motorcycle_left"], images["motorcycle_right"]])
    assert caught.value.status == 413 and "VISION_MAX_TOTAL_BYTES" in caught.value.detail
    assert caught.value.to_problem()["limit_bytes"] == 1_000_000
    assert aoai.requests == []


async def test_estimated_image_tokens_over_the_bound_is_400_before_decoding(make_settings, make_analyzer, aoai,
                                                                           images):
    analyzer = make_analyzer(make_settings(VISION_MAX_IMAGE_TOKENS="500"))
    pair = [images["motorcycle_left"], images["motorcycle_right"]]
    with pytest.raises(InvalidParameter) as caught:
        await compare(analyzer, pair, detail="high")
    assert "850 image tokens" in caught.value.detail and "VISION_MAX_IMAGE_TOKENS" in caught.value.detail
    assert aoai.requests == []
    result = await compare(analyzer, pair, detail="low")  # 2 x 85 fits
    assert result["totals"]["estimated_image_tokens"] == 170


async def test_the_failing_image_is_named(make_settings, make_analyzer, aoai, images):
    analyzer = make_analyzer(make_settings(VISION_MAX_IMAGE_BYTES="300000"))
    with pytest.raises(PayloadTooLarge) as too_big:
        await compare(analyzer, [images["chelsea"], images["motorcycle_left"]])
    assert too_big.value.to_problem()["image"] == 2
    with pytest.raises(UnsupportedImage) as not_image:
        await compare(analyzer, [images["chelsea"], b"%PDF-1.7 not an image"])
    assert not_image.value.to_problem()["image"] == 2
    assert aoai.requests == []


async def test_sequence_analyses_each_image_then_synthesises_once(make_settings, make_analyzer, aoai, images):
    aoai.set_responder(_synthesis_responder)
    data = [images["motorcycle_left"], images["motorcycle_right"], images["chelsea"]]
    result = await sequence(make_analyzer(make_settings()), data, prompt="What is shown?", detail="low")

    requests = aoai.requests
    assert len(requests) == 4
    per_image, synthesis_request = requests[:3], requests[3]
    assert all(len(r.images) == 1 and "response_format" not in r.body for r in per_image)
    assert synthesis_request.images == []
    assert synthesis_request.body["messages"][-1]["content"] == [{"type": "text", "text": synthesis_request.text}]
    response_format = synthesis_request.body["response_format"]["json_schema"]
    assert response_format["name"] == "sequence_synthesis" and response_format["strict"] is True
    for label in ("[Image 1]", "[Image 2]", "[Image 3]"):
        assert label in synthesis_request.text
    assert "What is shown?" in synthesis_request.text

    assert result["synthesis"] == SYNTHESIS
    assert [(i["index"], i["label"]) for i in result["images"]] == [(1, "[Image 1]"), (2, "[Image 2]"),
                                                                    (3, "[Image 3]")]
    assert all(i["analysis"].startswith("Test double analysis of 1 image(s) at detail=low") for i in result["images"])
    parts = [*result["images"], result["synthesis_meta"]]
    assert result["usage"]["total_tokens"] == sum(p["usage"]["total_tokens"] for p in parts)
    assert result["synthesis_meta"]["attempts"] == 1 and result["cached"] is False


async def test_sequence_synthesis_is_validated_and_re_asked(make_settings, make_analyzer, aoai, images):
    aoai.enqueue(Reply.ok("a"), Reply.ok("b"), Reply.ok('{"common_themes": "bikes"}'), Reply.ok(json.dumps(SYNTHESIS)))
    result = await sequence(make_analyzer(make_settings()), [images["motorcycle_left"], images["motorcycle_right"]])
    assert result["synthesis"] == SYNTHESIS and result["synthesis_meta"]["attempts"] == 2
    assert "common_themes: Input should be a valid list" in aoai.requests[3].body["messages"][-1]["content"]


async def test_sequence_fails_naming_the_image_after_the_others_finish(make_settings, make_analyzer, aoai, images):
    with pytest.raises(UnsupportedImage) as caught:
        await sequence(make_analyzer(make_settings()), [images["chelsea"], b"just text", images["motorcycle_left"]])
    assert caught.value.to_problem()["image"] == 2
    assert len(aoai.requests) == 2  # the good images were analysed (and would be cached), no synthesis


@pytest.mark.azurite
async def test_sequence_second_run_is_served_from_the_cache(make_settings, cache_settings, make_analyzer, aoai,
                                                            images):
    aoai.set_responder(_synthesis_responder)
    data = [images["motorcycle_left"], images["motorcycle_right"]]
    first = await sequence(make_analyzer(make_settings(**cache_settings)), data)
    assert len(aoai.requests) == 3
    second = await sequence(make_analyzer(make_settings(**cache_settings)), data)  # another worker, same table
    assert len(aoai.requests) == 3
    assert [i["cached"] for i in second["images"]] == [True, True]
    assert second["synthesis_meta"]["cached"] is True and second["cached"] is True
    assert second["synthesis"] == first["synthesis"] and second["usage"] == first["usage"]
    await sequence(make_analyzer(make_settings(**cache_settings)), [*data, images["chelsea"]])
    assert len(aoai.requests) == 5  # one new image analysis and a new synthesis; the two others cached


@pytest.mark.azurite
async def test_compare_is_cached_over_all_images_in_order(make_settings, cache_settings, make_analyzer, aoai, images):
    analyzer = make_analyzer(make_settings(**cache_settings))
    pair = [images["motorcycle_left"], images["motorcycle_right"]]
    first = await compare(analyzer, pair, detail="low")
    again = await compare(analyzer, list(pair), detail="low")
    assert (first["cached"], again["cached"], len(aoai.requests)) == (False, True, 1)
    assert again["images"] == first["images"]
    await compare(analyzer, pair[::-1], detail="low")
    assert len(aoai.requests) == 2


def _files(*blobs: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{i}.png", blob, "image/png")) for i, blob in enumerate(blobs, 1)]


async def test_http_compare_with_several_file_fields(make_settings, make_client, aoai, images):
    client = await make_client(make_settings())
    response = await client.post("/api/compare", files=_files(images["motorcycle_left"], images["chelsea"]),
                                 data={"prompt": "Same?", "detail": "low"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [i["label"] for i in body["images"]] == ["[Image 1]", "[Image 2]"]
    assert body["images"][1]["original_bytes"] == len(images["chelsea"])
    assert aoai.requests[0].text.startswith("Same?\n[Image 1]\n[Image 2]")


async def test_http_sequence(make_settings, make_client, aoai, images):
    aoai.set_responder(_synthesis_responder)
    client = await make_client(make_settings())
    response = await client.post("/api/sequence?detail=low", files=_files(images["motorcycle_left"],
                                                                         images["motorcycle_right"]))
    assert response.status_code == 200, response.text
    assert response.json()["synthesis"] == SYNTHESIS and len(aoai.requests) == 3


async def test_http_too_many_images_is_400(make_settings, make_client, aoai, images):
    client = await make_client(make_settings(VISION_MAX_IMAGES="2"))
    for count in (3, 6):
        response = await client.post("/api/compare", files=_files(*[images["chelsea"]] * count))
        assert response.status_code == 400, response.text
        assert response.json()["parameter"] == "file" and "VISION_MAX_IMAGES" in response.json()["detail"]
    not_multipart = await client.post("/api/compare", content=images["chelsea"])
    assert not_multipart.status_code == 400
    assert aoai.requests == []


async def test_http_total_bytes_is_413_declared_or_streamed(make_settings, make_client, aoai, images):
    client = await make_client(make_settings(VISION_MAX_TOTAL_BYTES="1000000"))
    files = _files(images["motorcycle_left"], images["motorcycle_right"])
    declared = await client.post("/api/compare", files=files)
    assert declared.status_code == 413 and declared.json()["type"] == "/problems/payload-too-large"
    assert "VISION_MAX_TOTAL_BYTES" in declared.json()["detail"]

    built = httpx.Request("POST", "http://testserver/api/compare", files=files)
    body, sent = built.read(), []

    async def chunks():
        for start in range(0, len(body), 64 * 1024):
            sent.append(start)
            yield body[start:start + 64 * 1024]

    streamed = await client.post("/api/compare", content=chunks(),
                                 headers={"content-type": built.headers["content-type"]})
    assert streamed.status_code == 413, streamed.text
    assert len(sent) < len(body) // (64 * 1024)  # cut off part way, not after reading it all
    assert aoai.requests == []


async def test_http_one_image_too_large_is_413_naming_it(make_settings, make_client, aoai, images):
    client = await make_client(make_settings(VISION_MAX_IMAGE_BYTES="300000"))
    response = await client.post("/api/compare", files=_files(images["chelsea"], images["motorcycle_left"]))
    assert response.status_code == 413 and response.json()["image"] == 2


async def test_cli_compare(aoai, images, corpus, monkeypatch, tmp_path, capsys):
    for key, value in {"AZURE_OPENAI_ENDPOINT": aoai.endpoint, "AZURE_OPENAI_API_KEY": aoai.api_key,
                       "AZURE_OPENAI_DEPLOYMENT": "gpt-4o", "VISION_CACHE_ENABLED": "false"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    aoai.enqueue(Reply.ok("They are the same motorcycle."))
    parser = argparse.ArgumentParser()
    add_compare_parser(parser.add_subparsers(dest="command", required=True))
    left, right = str(corpus / "motorcycle_left.png"), str(corpus / "motorcycle_right.png")
    args = parser.parse_args(["compare", left, right, "--detail", "low"])
    assert await args.handler(args) == 0
    out = capsys.readouterr().out
    assert f"[Image 1] {left}" in out and f"[Image 2] {right}" in out and "same motorcycle" in out
    assert len(aoai.last_request.images) == 2


async def test_cli_sequence(aoai, images, corpus, monkeypatch, tmp_path, capsys):
    """The CLI's sequence calls the service the /api/sequence route calls: per-image analyses, one synthesis."""
    for key, value in {"AZURE_OPENAI_ENDPOINT": aoai.endpoint, "AZURE_OPENAI_API_KEY": aoai.api_key,
                       "AZURE_OPENAI_DEPLOYMENT": "gpt-4o", "VISION_CACHE_ENABLED": "false"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    aoai.set_responder(_synthesis_responder)
    parser = argparse.ArgumentParser()
    add_sequence_parser(parser.add_subparsers(dest="command", required=True))
    left, right = str(corpus / "motorcycle_left.png"), str(corpus / "motorcycle_right.png")
    args = parser.parse_args(["sequence", left, right, "--detail", "low"])
    assert await args.handler(args) == 0
    out = capsys.readouterr().out
    assert f"[Image 1] {left}" in out and f"[Image 2] {right}" in out
    assert "Common themes:\n- a motorcycle" in out and "Recommendations:\n- photograph the front too" in out
    assert len(aoai.requests) == 3 and aoai.requests[-1].body["response_format"]["json_schema"]["strict"] is True
    as_json = parser.parse_args(["sequence", left, right, "--detail", "low", "--json"])
    assert await as_json.handler(as_json) == 0
    assert json.loads(capsys.readouterr().out)["synthesis"] == SYNTHESIS

