"""Settings: defaults, validation that names the setting, local.settings.json overlay."""

from __future__ import annotations

import json

import pytest

from shared.config import SETTINGS, Settings, load_settings, settings_help
from shared.errors import ConfigError

AZURE = {
    "AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com/",
    "AZURE_OPENAI_DEPLOYMENT": "vision",
}


def test_defaults_without_any_setting():
    settings = Settings.from_mapping({})
    assert settings.model_provider is None
    assert settings.azure_openai_api_version == "2024-10-21"
    assert settings.max_image_bytes == 20 * 1024 * 1024
    assert settings.max_image_pixels == 50_000_000
    assert settings.cache_ttl_seconds == 7 * 24 * 3600
    assert settings.cache_enabled is True


def test_azure_endpoint_is_normalised_and_selects_azure():
    settings = Settings.from_mapping(AZURE)
    assert settings.azure_openai_endpoint == "https://example.openai.azure.com"
    assert settings.model_provider == "azure_openai"
    assert settings.deployment_name == "vision"


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com"}, "AZURE_OPENAI_DEPLOYMENT"),
        ({"AZURE_OPENAI_ENDPOINT": "not a url", "AZURE_OPENAI_DEPLOYMENT": "d"}, "AZURE_OPENAI_ENDPOINT"),
        ({"OPENAI_BASE_URL": "http://localhost:11434/v1"}, "OPENAI_MODEL"),
        ({**AZURE, "OPENAI_BASE_URL": "http://h/v1", "OPENAI_MODEL": "m"}, "OPENAI_BASE_URL"),
        ({"VISION_MAX_IMAGE_BYTES": "lots"}, "VISION_MAX_IMAGE_BYTES"),
        ({"VISION_MAX_IMAGE_PIXELS": "0"}, "VISION_MAX_IMAGE_PIXELS"),
        ({"VISION_CACHE_ENABLED": "maybe"}, "VISION_CACHE_ENABLED"),
        ({"VISION_JPEG_QUALITY": "100"}, "VISION_JPEG_QUALITY"),
        ({"VISION_DEFAULT_MAX_TOKENS": "5000"}, "VISION_DEFAULT_MAX_TOKENS"),
        ({"VISION_MODEL_TABLE": "{not json"}, "VISION_MODEL_TABLE"),
        ({"VISION_MODEL_TABLE": "[1, 2]"}, "VISION_MODEL_TABLE"),
    ],
)
def test_invalid_setting_names_the_setting(values, setting):
    with pytest.raises(ConfigError) as caught:
        Settings.from_mapping(values)
    assert caught.value.setting == setting
    assert setting in str(caught.value)


def test_keyless_host_storage_account_gives_cache_and_images_endpoints():
    settings = Settings.from_mapping({"AzureWebJobsStorage__accountName": "visionstore"})
    assert settings.table_service_uri == "https://visionstore.table.core.windows.net"
    assert settings.images_blob_service_uri == "https://visionstore.blob.core.windows.net"
    explicit = Settings.from_mapping({"AzureWebJobsStorage__accountName": "visionstore",
                                      "VISION_IMAGES_STORAGE__blobServiceUri": "https://images.blob.core.windows.net"})
    assert explicit.images_blob_service_uri == "https://images.blob.core.windows.net"
    with pytest.raises(ConfigError) as caught:
        Settings.from_mapping({"AzureWebJobsStorage__accountName": "Not_Valid"})
    assert caught.value.setting == "AzureWebJobsStorage__accountName"


def test_openai_compatible_server():
    settings = Settings.from_mapping({"OPENAI_BASE_URL": "http://localhost:11434/v1/", "OPENAI_MODEL": "llava"})
    assert settings.model_provider == "openai_compatible"
    assert settings.openai_base_url == "http://localhost:11434/v1"
    assert settings.deployment_name == "llava"


def test_secrets_are_not_in_repr():
    values = {**AZURE, "AZURE_OPENAI_API_KEY": "sekrit-key", "AzureWebJobsStorage": "AccountKey=abc"}
    settings = Settings.from_mapping(values)
    assert "sekrit-key" not in repr(settings)
    assert "AccountKey" not in repr(settings)


def test_local_settings_file_is_read_and_environment_wins(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {**AZURE, "VISION_CACHE_TABLE": "fromfile", "VISION_JPEG_QUALITY": "70"}}))
    settings = load_settings({"VISION_CACHE_TABLE": "fromenv"}, local_settings=path)
    assert settings.cache_table == "fromenv"
    assert settings.jpeg_quality == 70
    assert settings.model_provider == "azure_openai"


def test_unreadable_local_settings_is_a_config_error(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text("{broken")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, local_settings=path)
    assert caught.value.setting == "local.settings.json"


def test_example_file_lists_every_documented_setting():
    """local.settings.json.example and the settings table must not drift apart."""
    from pathlib import Path

    example = json.loads((Path(__file__).parent.parent / "local.settings.json.example").read_text())
    documented = {s.name for s in SETTINGS}
    optional = {"AzureWebJobsStorage__tableServiceUri", "VISION_MODEL_TABLE", "VISION_IMAGES_STORAGE__blobServiceUri",
                "AzureWebJobsStorage__accountName"}
    missing = documented - set(example["Values"]) - optional
    assert not missing
    Settings.from_mapping(example["Values"])  # the example itself is valid


def test_help_lists_every_setting():
    text = settings_help()
    for setting in SETTINGS:
        assert setting.name in text


def test_readme_settings_table_matches_the_settings():
    """README is the front door: its settings table is checked against the code."""
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("<!-- settings-table -->")[1].split("<!-- /settings-table -->")[0]
    rows = [line for line in table.strip().splitlines()[2:]]
    expected = [
        f"| `{s.name}` | {f'`{s.default}`' if s.default else ''} | {s.help} |" for s in SETTINGS
    ]
    assert rows == expected
