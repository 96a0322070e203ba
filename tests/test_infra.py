"""infra/ checked without Azure: checkov's offline scan, and the templates parsed with its parser (pycep).

Each security property the deployment promises is asserted on the parsed Bicep, so a change that
weakens one (a key turned back on, a container made public, a role widened) fails here, not in a
security review after the fact.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest
from pycep import BicepParser

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
COGNITIVE_SERVICES_OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"


@cache
def bicep(relative: str) -> dict:
    return BicepParser().parse(file_path=INFRA / relative)


def resource(relative: str, symbol: str, type_: str) -> dict:
    """The config of resource ``symbol``, checked to be of ``type_`` (loops and conditions unwrapped)."""
    declared = bicep(relative)["resources"][symbol]
    assert declared["type"] == type_
    config = declared["config"]
    while "loop_type" in config or "condition" in config:
        config = config["config"]
    return config


def test_every_template_parses_and_main_wires_the_modules():
    templates = sorted(p.relative_to(INFRA).as_posix() for p in INFRA.rglob("*.bicep"))
    assert templates == [
        "app/blob-subscription.bicep", "app/events.bicep", "app/function.bicep", "app/rbac.bicep",
        "core/identity.bicep", "core/monitoring.bicep", "core/openai.bicep", "core/storage.bicep", "main.bicep",
    ]
    for template in templates:
        assert bicep(template), template
    modules = {m["detail"]["path"] for m in bicep("main.bicep")["modules"].values()}
    # Everything but the subscription, which scripts/subscribe-blob-events deploys after the code.
    assert modules == set(templates) - {"main.bicep", "app/blob-subscription.bicep"}
    assert bicep("main.bicep")["globals"]["scope"]["value"] == "resourceGroup"


def test_parameters_file_names_only_real_parameters():
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(parameters) <= set(bicep("main.bicep")["parameters"])
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


def test_storage_account_is_keyless_private_and_tls12():
    account = resource("core/storage.bicep", "account", "Microsoft.Storage/storageAccounts")["properties"]
    assert account["allowSharedKeyAccess"] is False
    assert account["allowBlobPublicAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["supportsHttpsTrafficOnly"] is True
    assert account["networkAcls"]["bypass"] == "AzureServices"
    assert account["defaultToOAuthAuthentication"] is True


def test_containers_are_private_and_named_by_the_same_parameters_as_the_settings():
    for symbol in ("deploymentContainer", "containers"):
        container = resource("core/storage.bicep", symbol,
                             "Microsoft.Storage/storageAccounts/blobServices/containers")
        assert container["properties"]["publicAccess"] == "None"
    storage_params = bicep("main.bicep")["modules"]["storage"]["config"]["params"]
    assert storage_params["containerNames"] == [
        "inputContainerName", "resultsContainerName", "quarantineContainerName", "schemasContainerName",
        "cacheContainerName", "deadLetterContainerName"]
    table = resource("core/storage.bicep", "cacheTable", "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert table["name"] == "cacheTableName"
    assert storage_params["cacheTableName"] == "cacheTableName"


def test_main_defaults_are_the_settings_defaults():
    from shared.config import DEFAULTS

    params = bicep("main.bicep")["parameters"]
    for param, setting in {
        "inputContainerName": "VISION_INPUT_CONTAINER", "resultsContainerName": "VISION_RESULTS_CONTAINER",
        "quarantineContainerName": "VISION_QUARANTINE_CONTAINER", "schemasContainerName": "VISION_SCHEMAS_CONTAINER",
        "cacheContainerName": "VISION_CACHE_CONTAINER", "cacheTableName": "VISION_CACHE_TABLE",
        "localFallback": "VISION_LOCAL_FALLBACK", "openAiModelName": "AZURE_OPENAI_MODEL",
    }.items():
        assert params[param]["default"] == DEFAULTS[setting], param


def test_function_app_is_flex_consumption_https_only_and_identity_deployed():
    plan = resource("app/function.bicep", "plan", "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True
    app = resource("app/function.bicep", "app", "Microsoft.Web/sites")
    assert app["kind"] == "functionapp,linux"
    assert app["identity"]["type"] == "UserAssigned"
    properties = app["properties"]
    assert properties["httpsOnly"] is True
    site = properties["siteConfig"]
    assert (site["minTlsVersion"], site["ftpsState"]) == ("1.2", "Disabled")
    config = properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"}
    scale = config["scaleAndConcurrency"]
    assert (scale["instanceMemoryMB"], scale["maximumInstanceCount"]) == ("instanceMemoryMB", "maximumInstanceCount")
    params = bicep("main.bicep")["parameters"]
    assert "instanceMemoryMB" in params and "maximumInstanceCount" in params
    for kind in ("ftp", "scm"):
        policy = resource("app/function.bicep", f"{kind}Credentials",
                          "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
        assert policy["properties"]["allow"] is False


def app_settings() -> dict:
    site = resource("app/function.bicep", "app", "Microsoft.Web/sites")["properties"]["siteConfig"]
    pairs = [(s["name"], s["value"]) for s in site["appSettings"]]
    assert len(pairs) == len(dict(pairs)), "duplicate app setting"
    return dict(pairs)


def test_app_settings_are_identity_based_and_keyless():
    settings = app_settings()
    assert "FUNCTIONS_WORKER_RUNTIME" not in settings  # Flex Consumption rejects it
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert settings["AzureWebJobsStorage__accountName"] == "storageAccountName"
    for prefix in ("AzureWebJobsStorage", "VISION_IMAGES_STORAGE"):
        assert settings[f"{prefix}__credential"] == "managedidentity"
        assert settings[f"{prefix}__clientId"] == "identityClientId"
    # A blob trigger's identity connection needs both service URIs (poison messages go to a queue).
    assert settings["VISION_IMAGES_STORAGE__blobServiceUri"] == "storageBlobEndpoint"
    assert settings["VISION_IMAGES_STORAGE__queueServiceUri"] == "storageQueueEndpoint"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert settings["VISION_BLOB_SOURCE"] == "EventGrid"
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT", "AZURE_OPENAI_MODEL",
                 "APPLICATIONINSIGHTS_CONNECTION_STRING"):
        assert settings[name], name
    assert not [name for name in settings if re.search(r"KEY|SECRET|PASSWORD", name, re.I)]
    assert "AzureWebJobsStorage" not in settings and "VISION_IMAGES_STORAGE" not in settings


def test_no_key_or_connection_string_anywhere_in_infra():
    text = "\n".join(p.read_text() for p in INFRA.rglob("*.bicep"))
    for forbidden in ("listKeys(", "AccountKey=", "SharedAccessSignature", "key1", "primaryKey"):
        assert forbidden not in text, forbidden
    key_param = bicep("app/blob-subscription.bicep")["parameters"]["blobsExtensionKey"]
    assert {"type": "secure"} in key_param["decorators"]
    assert key_param["default"] is None


def test_azure_openai_is_entra_only_with_a_vision_deployment():
    account = resource("core/openai.bicep", "account", "Microsoft.CognitiveServices/accounts")
    assert account["kind"] == "OpenAI"
    assert account["properties"]["disableLocalAuth"] is True
    assert account["properties"]["customSubDomainName"] == "customSubDomainName"
    assert account["properties"]["publicNetworkAccess"] == "publicNetworkAccess"
    params = bicep("core/openai.bicep")["parameters"]
    assert params["modelName"]["default"] == "gpt-4o"
    assert params["deploymentSku"]["default"] == "GlobalStandard"
    deployment = resource("core/openai.bicep", "deployment", "Microsoft.CognitiveServices/accounts/deployments")
    assert deployment["sku"] == {"name": "deploymentSku", "capacity": "deploymentCapacity"}
    assert deployment["properties"]["model"] == {"format": "OpenAI", "name": "modelName", "version": "modelVersion"}
    for name in ("openAiModelName", "openAiModelVersion", "openAiDeploymentSku", "openAiDeploymentCapacity",
                 "openAiPublicNetworkAccess"):
        assert name in bicep("main.bicep")["parameters"], name


def test_monitoring_has_local_auth_disabled():
    workspace = resource("core/monitoring.bicep", "workspace", "Microsoft.OperationalInsights/workspaces")
    assert workspace["properties"]["features"]["disableLocalAuth"] is True
    insights = resource("core/monitoring.bicep", "appInsights", "Microsoft.Insights/components")
    assert insights["properties"]["DisableLocalAuth"] is True
    assert insights["properties"]["WorkspaceResourceId"]


def role_assignments() -> set[tuple[str, str, str, str, bool]]:
    """(scope, principal parameter, role ID, principal type, conditional) for every assignment."""
    doc = bicep("app/rbac.bicep")
    variables = {name: v["value"] for name, v in doc["variables"].items()}
    found = set()
    for declared in doc["resources"].values():
        if declared["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        config, role_names, conditional = declared["config"], None, False
        while "loop_type" in config or "condition" in config:
            if config.get("loop_type"):
                role_names = variables[config["loop_type"]["detail"]["array_name"]]
            conditional = conditional or config.get("condition") is not None
            config = config["config"]
        properties = config["properties"]
        role_ref = properties["roleDefinitionId"]["function"]["parameters"]
        assert role_ref["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        for role_name in role_names or [role_ref["resource_name_1"]]:
            found.add((config["scope"], properties["principalId"], variables[role_name],
                       properties["principalType"], conditional))
    return found


def test_role_assignments_use_built_in_role_ids_for_the_identity_and_optionally_the_user():
    identity = {(scope, role) for scope, principal, role, kind, conditional in role_assignments()
                if principal == "identityPrincipalId" and kind == "ServicePrincipal" and not conditional}
    assert identity == {
        ("storage", STORAGE_BLOB_DATA_OWNER), ("storage", STORAGE_QUEUE_DATA_CONTRIBUTOR),
        ("storage", STORAGE_TABLE_DATA_CONTRIBUTOR), ("appInsights", MONITORING_METRICS_PUBLISHER),
        ("openAi", COGNITIVE_SERVICES_OPENAI_USER),
    }
    user = {(scope, role) for scope, principal, role, kind, conditional in role_assignments()
            if principal == "userPrincipalId"}
    assert user == {("storage", STORAGE_BLOB_DATA_OWNER), ("storage", STORAGE_QUEUE_DATA_CONTRIBUTOR),
                    ("storage", STORAGE_TABLE_DATA_CONTRIBUTOR), ("openAi", COGNITIVE_SERVICES_OPENAI_USER)}
    assert all(kind == "User" and conditional for _, principal, _, kind, conditional in role_assignments()
               if principal == "userPrincipalId")
    assert len(role_assignments()) == 9


def test_event_grid_delivers_finished_input_blobs_to_the_blob_extension():
    topic = resource("app/events.bicep", "topic", "Microsoft.EventGrid/systemTopics")
    assert topic["properties"]["topicType"] == "Microsoft.Storage.StorageAccounts"
    subscription = resource("app/blob-subscription.bicep", "subscription",
                            "Microsoft.EventGrid/systemTopics/eventSubscriptions")["properties"]
    destination = subscription["destination"]
    assert destination["endpointType"] == "WebHook"
    assert destination["properties"]["endpointUrl"] == (
        "https://${functionAppHostName}/runtime/webhooks/blobs?functionName=${functionName}&code=${blobsExtensionKey}")
    assert bicep("app/blob-subscription.bicep")["parameters"]["functionName"]["default"] == (
        "Host.Functions.on_image_uploaded")
    event_filter = subscription["filter"]
    assert event_filter["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert event_filter["subjectBeginsWith"] == "/blobServices/default/containers/${inputContainerName}/blobs/"
    [api_filter] = event_filter["advancedFilters"]
    assert (api_filter["operatorType"], api_filter["key"]) == ("StringIn", "data.api")
    assert set(api_filter["values"]) == {"PutBlob", "PutBlockList", "FlushWithClose"}
    assert subscription["retryPolicy"] == {"maxDeliveryAttempts": "maxDeliveryAttempts",
                                           "eventTimeToLiveInMinutes": "eventTimeToLiveInMinutes"}
    dead_letter = subscription["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"]["type"] == "UserAssigned"
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert dead_letter["deadLetterDestination"]["properties"]["blobContainerName"] == "deadLetterContainerName"


def test_outputs_carry_what_the_subscription_script_reads():
    outputs = set(bicep("main.bicep")["outputs"])
    script = (REPO / "scripts" / "subscribe-blob-events").read_text()
    read = set(re.findall(r"\b(AZURE_[A-Z_]+|SERVICE_API_URI|EVENT_GRID_[A-Z_]+|VISION_INPUT_CONTAINER)\b", script))
    assert read - {"AZURE_RESOURCE_GROUP"} <= outputs
    assert "AZURE_RESOURCE_GROUP" in outputs


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    assert CHECKOV.exists(), "checkov is installed by scripts/setup into .venv-checkov"
    run = subprocess.run(
        [str(CHECKOV), "--framework", "bicep", "--skip-download", "--directory", str(INFRA), "--output", "json"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    return json.loads(run.stdout)


def test_checkov_finds_no_failed_check(checkov_report):
    summary = checkov_report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in checkov_report["results"]["failed_checks"]]
    assert failed == []
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 20
    assert summary["resource_count"] >= 20


def test_every_skipped_check_has_a_reason_next_to_its_resource(checkov_report):
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped, "the templates document their skips"
    for check in skipped:
        assert len(check["check_result"]["suppress_comment"].strip()) > 20, check["check_id"]
    # And no stale skip: each inline skip suppresses a check that would otherwise fail.
    written = set()
    for path in INFRA.rglob("*.bicep"):
        written |= set(re.findall(r"checkov:skip=(CKV\d?_[A-Z]+_\d+):", path.read_text()))
    assert written == {c["check_id"] for c in skipped}
