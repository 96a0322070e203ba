"""The HTTP API through the real FastAPI app: every status code, problem+json, OpenAPI."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from tests.aoai_double import Reply
from tests.conftest import assert_problem, encode


async def test_analyze_multipart_returns_the_documented_fields(make_settings, make_client, aoai, png_bytes):
    aoai.enqueue(Reply.ok("A cat on a rug.", prompt_tokens=120, completion_tokens=7))
    client = await make_client(make_settings())
    response = await client.post(
        "/api/analyze",
        files={"file": ("cat.png", png_bytes, "image/png")},
        data={"prompt": "What animal?", "detail": "high", "max_tokens": "50"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["analysis"] == "A cat on a rug."
    assert body["deployment"] == "gpt-4o"
    assert body["detail"] == "high"
    assert body["cached"] is False
    assert body["usage"] == {"prompt_tokens": 120, "completion_tokens": 7, "total_tokens": 127}
    assert body["image"]["width"] == 451 and body["image"]["height"] == 300
    assert body["image"]["format"] == "PNG"
    assert body["image"]["estimated_tokens"] == 85 + 170 * 1  # 451x300 fits in one 512 tile
    assert body["image"]["bytes"] > 0
    assert isinstance(body["latency_ms"], int)
    assert body["estimated_cost_usd"] > 0

    [request] = aoai.requests
    assert request.body["max_tokens"] == 50
    content = request.body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What animal?"}
    assert content[1]["image_url"]["detail"] == "high"
    sent = base64.b64decode(content[1]["image_url"]["url"].split(",", 1)[1])
    assert Image.open(io.BytesIO(sent)).format == "JPEG"


async def test_analyze_raw_body_with_query_parameters(make_settings, make_client, aoai, corpus):
    client = await make_client(make_settings())
    data = (corpus / "rocket.jpg").read_bytes()
    response = await client.post(
        "/api/analyze?detail=low&prompt=Name%20it",
        content=data,
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["detail"] == "low"
    assert response.json()["image"]["format"] == "JPEG"
    assert aoai.requests[0].body["messages"][-1]["content"][0]["text"] == "Name it"


async def test_default_prompt_and_detail_selection_by_task(make_settings, make_client, aoai, png_bytes):
    client = await make_client(make_settings())
    response = await client.post("/api/analyze?task=ocr", content=png_bytes)
    assert response.status_code == 200, response.text
    assert response.json()["detail"] == "high"
    assert aoai.requests[0].body["messages"][-1]["content"][0]["text"] == "Describe this image"
    response = await client.post("/api/analyze", content=png_bytes)  # 451x300: both sides under 768
    assert response.json()["detail"] == "low"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("detail=ultra", "detail"),
        ("task=poetry", "task"),
        ("max_tokens=zero", "max_tokens"),
        ("max_tokens=0", "max_tokens"),
        ("max_tokens=999999", "max_tokens"),
    ],
)
async def test_bad_parameters_are_400(make_settings, make_client, aoai, png_bytes, query, parameter):
    client = await make_client(make_settings())
    response = await client.post(f"/api/analyze?{query}", content=png_bytes)
    body = assert_problem(response, 400, "/problems/invalid-parameter")
    assert body["parameter"] == parameter
    assert aoai.requests == []


async def test_multipart_without_file_field_is_400(make_settings, make_client, aoai, png_bytes):
    client = await make_client(make_settings())
    response = await client.post("/api/analyze", files={"image": ("x.png", png_bytes, "image/png")})
    assert_problem(response, 400, "/problems/invalid-parameter")


async def test_too_large_by_content_length_is_413(make_settings, make_client, aoai):
    client = await make_client(make_settings(VISION_MAX_IMAGE_BYTES="1000"))
    response = await client.post("/api/analyze", content=b"\xff\xd8\xff" + b"0" * 5000)
    body = assert_problem(response, 413, "/problems/payload-too-large")
    assert body["limit_bytes"] == 1000


async def test_too_large_streamed_without_length_is_413_before_reading_it_all(make_settings, make_client, aoai):
    sent = []

    async def body():
        for _ in range(1000):
            sent.append(1)
            yield b"\x89PNG" + b"0" * 1020

    client = await make_client(make_settings(VISION_MAX_IMAGE_BYTES="10000"))
    response = await client.post("/api/analyze", content=body())
    assert_problem(response, 413, "/problems/payload-too-large")
    assert len(sent) < 1000  # refused part way, not after holding the whole body


async def test_too_large_multipart_file_is_413(make_settings, make_client, aoai, png_bytes):
    client = await make_client(make_settings(VISION_MAX_IMAGE_BYTES="100000"))
    response = await client.post("/api/analyze", files={"file": ("big.png", png_bytes, "image/png")})
    assert_problem(response, 413, "/problems/payload-too-large")


@pytest.mark.parametrize(
    "payload",
    [b"hello, this is text", b"<html><body>hi</body></html>", b"\x00" * 64],
)
async def test_non_images_are_415_whatever_the_declared_type(make_settings, make_client, aoai, payload):
    client = await make_client(make_settings())
    response = await client.post(
        "/api/analyze", files={"file": ("photo.jpg", payload, "image/jpeg")}
    )
    assert_problem(response, 415, "/problems/unsupported-media-type")
    assert aoai.requests == []


async def test_a_broken_pdf_is_an_unreadable_document_whatever_the_declared_type(make_settings, make_client, aoai):
    client = await make_client(make_settings())
    response = await client.post("/api/analyze", files={"file": ("photo.jpg", b"%PDF-1.7\n%...", "image/jpeg")})
    assert_problem(response, 422, "/problems/unreadable-document")
    assert aoai.requests == []


async def test_empty_body_is_415(make_settings, make_client, aoai):
    client = await make_client(make_settings())
    response = await client.post("/api/analyze", content=b"")
    assert_problem(response, 415, "/problems/unsupported-media-type")


async def test_truncated_image_is_422(make_settings, make_client, aoai, corpus):
    data = (corpus / "rocket.jpg").read_bytes()
    client = await make_client(make_settings())
    response = await client.post("/api/analyze", content=data[: len(data) // 2])
    assert_problem(response, 422, "/problems/undecodable-image")
    assert aoai.requests == []


async def test_pixel_bomb_is_422_without_decoding(make_settings, make_client, aoai):
    bomb = encode(Image.new("1", (12000, 6000)), "PNG")  # 72 MP of zeros: a few KiB
    client = await make_client(make_settings())
    response = await client.post("/api/analyze", content=bomb)
    body = assert_problem(response, 422, "/problems/image-too-large")
    assert body["limit_pixels"] == 50_000_000


async def test_throttled_past_the_request_deadline_is_429_with_retry_after(make_settings, make_client, aoai,
                                                                           png_bytes):
    """Throttling is waited out up to VISION_HTTP_DEADLINE_SECONDS; a longer pause answers 429 at once."""
    aoai.enqueue(Reply.throttled(retry_after_ms=4000))
    client = await make_client(make_settings(VISION_HTTP_DEADLINE_SECONDS="2"))
    response = await client.post("/api/analyze", content=png_bytes)
    assert_problem(response, 429, "/problems/model-throttled")
    assert int(response.headers["retry-after"]) >= 3
    assert len(aoai.requests) == 1


async def test_throttle_then_success_is_200(make_settings, make_client, aoai, png_bytes):
    aoai.enqueue(Reply.throttled(retry_after_ms=10))
    client = await make_client(make_settings())
    response = await client.post("/api/analyze", content=png_bytes)
    assert response.status_code == 200
    assert len(aoai.requests) == 2
    call = response.json()["call"]  # what the call took, next to what the service billed
    assert (call["attempts"], call["throttled"]) == (2, 1)
    assert call["charge_estimate"] >= response.json()["image"]["estimated_tokens"] + 1000  # + max_tokens


async def test_server_errors_are_503_with_retry_after(make_settings, make_client, aoai, png_bytes):
    aoai.enqueue_many(Reply.server_error(500), times=3)
    client = await make_client(make_settings())
    response = await client.post("/api/analyze", content=png_bytes)
    assert_problem(response, 503, "/problems/model-unavailable")
    assert "retry-after" in response.headers


async def test_timeout_is_503(make_settings, make_client, aoai, png_bytes):
    aoai.enqueue(Reply.timeout(seconds=3))
    client = await make_client(make_settings(VISION_MODEL_TIMEOUT_SECONDS="1", VISION_MODEL_MAX_RETRIES="0"))
    response = await client.post("/api/analyze", content=png_bytes)
    assert_problem(response, 503, "/problems/model-unavailable")


@pytest.mark.parametrize("reply", [Reply.malformed, Reply.malformed_schema])
async def test_garbage_answers_are_502(make_settings, make_client, aoai, png_bytes, reply):
    aoai.enqueue(reply())
    client = await make_client(make_settings(VISION_MODEL_MAX_RETRIES="0"))
    response = await client.post("/api/analyze", content=png_bytes)
    assert_problem(response, 502, "/problems/model-bad-response")


async def test_prompt_content_filter_is_422_naming_the_categories(make_settings, make_client, aoai, png_bytes):
    aoai.enqueue(Reply.content_filter_prompt())
    client = await make_client(make_settings())
    response = await client.post("/api/analyze", content=png_bytes)
    body = assert_problem(response, 422, "/problems/content-filtered")
    assert body["where"] == "prompt"
    assert body["categories"]


async def test_completion_content_filter_is_422(make_settings, make_client, aoai, png_bytes):
    aoai.enqueue(Reply.content_filter_completion())
    client = await make_client(make_settings())
    response = await client.post("/api/analyze", content=png_bytes)
    body = assert_problem(response, 422, "/problems/content-filtered")
    assert body["where"] == "completion"


async def test_no_model_configured_is_503_naming_the_settings(make_client, png_bytes):
    from shared.config import Settings

    client = await make_client(Settings.from_mapping({"VISION_CACHE_ENABLED": "false", "VISION_PROVIDER": "none"}))
    response = await client.post("/api/analyze", content=png_bytes)
    body = assert_problem(response, 503, "/problems/model-not-configured")
    assert "AZURE_OPENAI_ENDPOINT" in body["detail"] and "OPENAI_BASE_URL" in body["detail"]
    assert "retry-after" in response.headers


async def test_unknown_route_and_method_are_problems(make_settings, make_client):
    client = await make_client(make_settings())
    assert_problem(await client.get("/api/nope"), 404, "/problems/http-404")
    assert_problem(await client.get("/api/analyze"), 405, "/problems/http-405")


async def test_health_reports_configuration_without_secrets(make_settings, make_client, aoai):
    client = await make_client(make_settings())
    response = await client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["model"]["configured"] is True
    assert body["model"]["deployment"] == "gpt-4o"
    assert body["model"]["auth"] == "key"
    assert body["storage"] == {"cache": "disabled"}
    assert aoai.api_key not in response.text


async def test_health_checks_storage(make_settings, make_client, cache_settings):
    client = await make_client(make_settings(**cache_settings))
    body = (await client.get("/api/health")).json()
    assert body["status"] == "ok"
    assert body["storage"]["reachable"] is True


async def test_health_names_a_bad_setting(make_client):
    from shared.http.app import create_app
    from shared.services import Services

    app = create_app()
    app.state.services = Services()
    import os

    os.environ["VISION_MAX_IMAGE_BYTES"] = "lots"
    try:
        import httpx

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            response = await client.get("/api/health")
            analyze = await client.post("/api/analyze", content=b"x")
    finally:
        del os.environ["VISION_MAX_IMAGE_BYTES"]
    assert response.status_code == 503
    assert response.json()["setting"] == "VISION_MAX_IMAGE_BYTES"
    body = assert_problem(analyze, 500, "/problems/configuration-error")
    assert body["setting"] == "VISION_MAX_IMAGE_BYTES"


async def test_openapi_describes_analyze(make_settings, make_client):
    client = await make_client(make_settings())
    document = (await client.get("/api/openapi.json")).json()
    operation = document["paths"]["/api/analyze"]["post"]
    content = operation["requestBody"]["content"]
    form_fields = set(content["multipart/form-data"]["schema"]["properties"])
    assert form_fields >= {"file", "prompt", "detail", "task", "max_tokens"}
    assert "image/*" in content
    assert {"200", "400", "413", "415", "422", "429", "502", "503"} <= set(operation["responses"])
    assert "/api/health" in document["paths"]
    response_schema = document["components"]["schemas"]["AnalysisResponse"]
    assert {"analysis", "model", "deployment", "detail", "cached", "usage", "image", "latency_ms"} <= set(
        response_schema["properties"]
    )
