"""The deployment's moving parts agree with each other, checked without Azure.

Settings: what the code reads, what Bicep sets, what ``local.settings.json.example`` shows and the
settings table. Function metadata: ``function_app.py`` indexed as the Python worker indexes it, under
the app settings Bicep gives the app. azd: ``azure.yaml`` and its hooks. The Event Grid script, run
against a stand-in ``az``. The package: what ``.funcignore`` keeps out.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from pycep import BicepParser

from shared.config import DEFAULTS, SETTING_NAMES, SETTINGS, UNSET_IN_AZURE, Settings

REPO = Path(__file__).resolve().parent.parent

# Read by the Functions host, its Python worker or the Azure SDKs, not shared/'s settings: the identity behind
# each connection, the trigger connection's queue endpoint, and Application Insights (the worker configures the
# exporter; shared/telemetry.py only checks whether it did).
HOST_SETTINGS = {
    "AZURE_CLIENT_ID", "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId",
    "VISION_IMAGES_STORAGE__queueServiceUri", "VISION_IMAGES_STORAGE__credential", "VISION_IMAGES_STORAGE__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
}
# Only Core Tools reads these, from local.settings.json.
CORE_TOOLS_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsFeatureFlags"}

# What the references in function.bicep's app settings stand for in a real deployment.
EXAMPLE_VALUES = {
    "identityClientId": "6f1b2a43-95c3-4a4e-9d1e-2f3c4b5a6d7e",
    "storageAccountName": "stabc123",
    "storageBlobEndpoint": "https://stabc123.blob.core.windows.net/",
    "storageQueueEndpoint": "https://stabc123.queue.core.windows.net/",
    "applicationInsightsConnectionString": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    "openAiEndpoint": "https://oai-abc123.openai.azure.com/",
    "openAiDeployment": "gpt-4o",
    "openAiModel": "gpt-4o",
    "openAiTokensPerMinute": "30000",
}


def bicep_app_settings() -> dict[str, str]:
    """function.bicep's app settings, each parameter reference resolved as a deployment would."""
    function = BicepParser().parse(file_path=REPO / "infra/app/function.bicep")
    main = BicepParser().parse(file_path=REPO / "infra/main.bicep")
    passed = main["modules"]["function"]["config"]["params"]
    main_defaults = {name: p["default"] for name, p in main["parameters"].items()}
    site = function["resources"]["app"]["config"]["properties"]["siteConfig"]
    resolved = {}
    for setting in site["appSettings"]:
        value = setting["value"]
        if isinstance(value, dict):  # string(<parameter>): the only function the app settings use
            assert value["function"]["type"] == "string", setting
            value = value["function"]["parameters"]["value_to_convert"]
        if value in EXAMPLE_VALUES:
            value = EXAMPLE_VALUES[value]
        elif value in function["parameters"]:
            source = passed[value]  # a main.bicep parameter, or an expression (then an example value)
            value = str(main_defaults[source]) if isinstance(source, str) else EXAMPLE_VALUES[value]
        else:
            value = re.sub(r"\$\{(\w+)\}", lambda m: EXAMPLE_VALUES[m.group(1)], value)
        resolved[setting["name"]] = value
    return resolved


def setting_names_in_code() -> set[str]:
    """Every string constant in shared/ and function_app.py that names a setting (or a setting prefix)."""
    pattern = re.compile(r"^(VISION_|AZURE_OPENAI_|OPENAI_|AzureWebJobsStorage)\w*$")
    names = set()
    for path in [*(REPO / "shared").rglob("*.py"), REPO / "function_app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.match(node.value):
                names.add(node.value)
    return names


def test_every_setting_the_code_reads_is_in_the_settings_table():
    read = setting_names_in_code()
    assert len(read) > 30
    unknown = {n for n in read if n not in SETTING_NAMES and not any(
        s.startswith(n) and n.endswith("__") for s in SETTING_NAMES)}
    assert unknown == set()


def test_bicep_sets_every_setting_without_a_default_except_the_documented_local_only_ones():
    bicep = set(bicep_app_settings())
    missing = {s.name for s in SETTINGS if s.default is None and s.name not in bicep and s.name not in UNSET_IN_AZURE}
    assert missing == set()
    assert bicep & UNSET_IN_AZURE == set(), "keys and connection strings stay out of Azure"
    assert all(DEFAULTS[name] is None for name in UNSET_IN_AZURE)
    assert bicep - SETTING_NAMES == HOST_SETTINGS


def test_bicep_app_settings_load_into_a_keyless_azure_configuration():
    environ = bicep_app_settings()
    settings = Settings.from_mapping(environ)
    assert settings.model_provider == "azure_openai"
    assert settings.azure_openai_api_key is None and settings.storage_connection_string is None
    assert settings.images_connection_string is None
    assert settings.images_blob_service_uri == "https://stabc123.blob.core.windows.net"
    assert settings.table_service_uri == "https://stabc123.table.core.windows.net"
    assert (settings.blob_source, settings.input_container) == ("EventGrid", "images")
    # Each instance paces its calls to its share of the deployment's quota.
    assert (settings.tpm_limit, settings.instances) == (30_000, 10)


def test_local_settings_example_names_known_settings_with_their_defaults():
    values = json.loads((REPO / "local.settings.json.example").read_text())["Values"]
    assert set(values) - SETTING_NAMES == CORE_TOOLS_SETTINGS
    for name, value in values.items():
        if DEFAULTS.get(name) is not None:
            assert value == DEFAULTS[name], name
    assert not [name for name, value in values.items() if "KEY" in name and value]


def index_like_the_worker(environ: dict[str, str]) -> list[dict]:
    """Import function_app.py in a fresh interpreter under ``environ`` and build each function's
    metadata as the Python worker does: find the one FunctionRegister, then the raw bindings through
    the deferred-binding extension (which marks SDK-type parameters)."""
    script = textwrap.dedent("""
        import inspect, json, types, typing
        import azure.functions as func
        from azurefunctions.extensions.base import meta
        import function_app
        [app] = [v for v in vars(function_app).values() if isinstance(v, func.FunctionRegister)]
        metadata = []
        for function in app.get_functions():
            user_function = function.get_user_function()
            hints = typing.get_type_hints(user_function)
            input_types = {name: types.SimpleNamespace(pytype=hints.get(name))
                           for name in inspect.signature(user_function).parameters}
            raw, _ = meta._ConverterMeta.get_raw_bindings(function, input_types)
            metadata.append({"name": function.get_function_name(), "script_file": function.function_script_file,
                             "bindings": [json.loads(b) for b in raw]})
        print(json.dumps(metadata))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VISION_", "AZURE_", "AzureWebJobs"))}
    env.update(environ)
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(run.stdout)


def test_function_metadata_as_the_host_receives_it_in_azure():
    settings = bicep_app_settings()
    metadata = {m["name"]: m for m in index_like_the_worker(settings)}
    assert set(metadata) == {"http_app_func", "on_image_uploaded", "backfill_pending_blobs"}
    [timer] = metadata["backfill_pending_blobs"]["bindings"]
    assert (timer["type"], timer["schedule"], timer["runOnStartup"]) == ("timerTrigger", "0 10 0 * * *", False)
    assert all(Path(m["script_file"]).name == "function_app.py" for m in metadata.values())

    http = {b["type"]: b for b in metadata["http_app_func"]["bindings"]}
    assert set(http) == {"httpTrigger", "http"}
    assert http["httpTrigger"]["authLevel"] == "FUNCTION"
    assert http["httpTrigger"]["route"] == "/{*route}"
    assert {"GET", "POST"} <= set(http["httpTrigger"]["methods"])
    assert http["http"]["name"] == "$return"

    [blob] = metadata["on_image_uploaded"]["bindings"]
    assert (blob["type"], blob["direction"], blob["name"]) == ("blobTrigger", "IN", "client")
    assert blob["path"] == "images/{name}"
    assert blob["source"] == "EventGrid"
    assert blob["properties"] == {"SupportsDeferredBinding": True}
    # The trigger's identity connection is fully described by the app settings.
    assert blob["connection"] == "VISION_IMAGES_STORAGE"
    for suffix in ("blobServiceUri", "queueServiceUri", "credential", "clientId"):
        assert settings[f"VISION_IMAGES_STORAGE__{suffix}"], suffix
    # The Event Grid subscription names the same function.
    subscription = BicepParser().parse(file_path=REPO / "infra/app/blob-subscription.bicep")
    assert subscription["parameters"]["functionName"]["default"] == "Host.Functions.on_image_uploaded"
    host = json.loads((REPO / "host.json").read_text())
    assert host["extensions"]["blobs"]["poisonBlobThreshold"] == int(DEFAULTS["VISION_MAX_ATTEMPTS"])


def test_function_metadata_locally_follows_the_settings():
    [blob] = next(m for m in index_like_the_worker({"VISION_INPUT_CONTAINER": "uploads",
                                                    "VISION_BLOB_SOURCE": "LogsAndContainerScan"})
                  if m["name"] == "on_image_uploaded")["bindings"]
    assert (blob["path"], blob["connection"], blob["source"]) == (
        "uploads/{name}", "AzureWebJobsStorage", "LogsAndContainerScan")


def test_azure_yaml_builds_locally_and_wires_event_grid_after_deploy():
    document = yaml.safe_load((REPO / "azure.yaml").read_text())
    assert (document["infra"]["provider"], document["infra"]["path"], document["infra"]["module"]) == (
        "bicep", "infra", "main")
    assert (REPO / "infra" / "main.bicep").exists()
    service = document["services"]["api"]
    assert (service["project"], service["language"], service["host"]) == (".", "python", "function")
    assert service["remoteBuild"] is False
    assert service["hooks"]["prepackage"]["posix"]["run"] == "bash scripts/package"
    assert document["hooks"]["postdeploy"]["posix"]["run"] == "bash scripts/subscribe-blob-events"
    for script in ("package", "subscribe-blob-events", "check-infra"):
        mode = (REPO / "scripts" / script).stat().st_mode
        assert mode & stat.S_IXUSR, script
        subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], check=True)


FAKE_AZ = """#!{python}
import json, os, pathlib, stat, sys
args = sys.argv[1:]
log = pathlib.Path(os.environ["FAKE_AZ_LOG"])
with log.open("a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:3] == ["functionapp", "keys", "list"]:
    print("blobs-extension-secret-value")
elif args[:3] == ["deployment", "group", "show"]:
    query = args[args.index("--query") + 1]
    name = query.split(".")[2]
    print({{"AZURE_FUNCTION_APP_NAME": "func-abc", "SERVICE_API_URI": "https://func-abc.azurewebsites.net",
           "EVENT_GRID_SYSTEM_TOPIC_NAME": "evgt-abc", "AZURE_STORAGE_ACCOUNT_ID": "/subscriptions/s/st",
           "AZURE_IDENTITY_ID": "/subscriptions/s/id", "VISION_INPUT_CONTAINER": "images",
           "EVENT_GRID_DEAD_LETTER_CONTAINER": "eventgrid-deadletter"}}[name])
elif args[:3] == ["deployment", "group", "create"]:
    params = pathlib.Path(args[args.index("--parameters") + 1].lstrip("@"))
    copy = log.with_name("params.json")
    copy.write_text(params.read_text())
    log.with_name("params.mode").write_text(oct(stat.S_IMODE(params.stat().st_mode)))
    log.with_name("params.path").write_text(str(params))
"""


def run_subscribe_script(tmp_path: Path, args: list[str], environ: dict[str, str]) -> tuple[list, dict]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(FAKE_AZ.format(python=sys.executable))
    (bin_dir / "curl").write_text("#!/bin/sh\nexit 0\n")  # the wake-up call; no network in tests
    for tool in ("az", "curl"):
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_AZ_LOG": str(tmp_path / "az.log"), **environ}
    subprocess.run(["bash", str(REPO / "scripts" / "subscribe-blob-events"), *args], env=env, check=True,
                   capture_output=True, text=True, timeout=60)
    calls = [json.loads(line) for line in (tmp_path / "az.log").read_text().splitlines()]
    return calls, json.loads((tmp_path / "params.json").read_text())["parameters"]


def test_subscription_script_deploys_the_subscription_bicep_with_the_key_kept_off_the_command_line(tmp_path):
    calls, params = run_subscribe_script(tmp_path, ["rg-vision"], {})
    create = next(c for c in calls if c[:3] == ["deployment", "group", "create"])
    assert create[create.index("--template-file") + 1] == "infra/app/blob-subscription.bicep"
    assert create[create.index("-g") + 1] == "rg-vision"
    assert params["blobsExtensionKey"]["value"] == "blobs-extension-secret-value"
    assert params["functionAppHostName"]["value"] == "func-abc.azurewebsites.net"
    assert params["inputContainerName"]["value"] == "images"
    bicep_params = BicepParser().parse(file_path=REPO / "infra/app/blob-subscription.bicep")["parameters"]
    assert set(params) == {name for name, p in bicep_params.items() if p["default"] is None}
    assert not any("blobs-extension-secret-value" in arg for call in calls for arg in call)
    assert (tmp_path / "params.mode").read_text() == "0o600"
    assert not Path((tmp_path / "params.path").read_text()).exists(), "the key file is removed"


def test_subscription_script_takes_azd_environment_values(tmp_path):
    environ = {"AZURE_RESOURCE_GROUP": "rg-azd", "AZURE_FUNCTION_APP_NAME": "func-xyz",
               "SERVICE_API_URI": "https://func-xyz.azurewebsites.net", "EVENT_GRID_SYSTEM_TOPIC_NAME": "evgt-xyz",
               "AZURE_STORAGE_ACCOUNT_ID": "/subscriptions/s/st", "AZURE_IDENTITY_ID": "/subscriptions/s/id",
               "VISION_INPUT_CONTAINER": "uploads", "EVENT_GRID_DEAD_LETTER_CONTAINER": "dl"}
    calls, params = run_subscribe_script(tmp_path, [], environ)
    assert not [c for c in calls if c[:3] == ["deployment", "group", "show"]]
    assert params["inputContainerName"]["value"] == "uploads"
    assert params["systemTopicName"]["value"] == "evgt-xyz"


def test_subscription_script_refuses_to_run_without_its_values(tmp_path):
    run = subprocess.run(["bash", str(REPO / "scripts" / "subscribe-blob-events")], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"]}, timeout=30)
    assert run.returncode == 2
    assert "AZURE_RESOURCE_GROUP is not set" in run.stderr


def funcignored(path: str) -> bool:
    """Whether .funcignore (gitignore syntax, as Core Tools and azd read it) keeps ``path`` out."""
    patterns = [p.strip() for p in (REPO / ".funcignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    parts = path.split("/")
    return any(fnmatch.fnmatch(part, pattern.rstrip("/")) for pattern in patterns for part in parts)


def test_funcignore_keeps_development_files_out_of_the_package():
    for path in ("tests/test_api.py", ".venv/bin/python", ".venv-checkov/bin/checkov", "node_modules/azurite/x.js",
                 ".azurite/__blobstorage__/x", "__azurite_db_blob__.json", "benchmarks/bench_prepare.py",
                 "local.settings.json", "infra/main.bicep", ".azure/dev/.env", "scripts/dev"):
        assert funcignored(path), path
    for path in ("function_app.py", "host.json", "requirements.txt", "shared/config.py",
                 ".python_packages/lib/site-packages/openai/__init__.py"):
        assert not funcignored(path), path
