"""What to do with one blob, decided from its name and metadata alone, and where its result goes.

Pure functions, no storage calls: :func:`plan_job` (the task from the first path segment, see
:data:`shared.tasks.PREFIX_TASKS`, overridden by blob metadata) and :func:`result_name` (the
result's blob name, which can never leave its container).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import unquote

from shared.analysis_options import AnalysisOptions
from shared.errors import InvalidParameter
from shared.tasks import DEFAULT_TASK, PREFIX_EXTRACTIONS, PREFIX_TASKS, TASK_PROMPTS

MAX_BLOB_NAME = 1024


@dataclass(frozen=True)
class BlobJob:
    """What to do with one blob, decided by its path and metadata."""

    task: str
    options: AnalysisOptions
    #: None for a plain analysis, else the extraction kind: invoice, table or schema.
    extraction: str | None = None
    #: Blob name of the JSON Schema in the schemas container (kind ``schema``).
    schema_blob: str | None = None


def plan_job(name: str, metadata: dict[str, str] | None) -> BlobJob:
    """The task from the first path segment, overridden by blob metadata ``task``/``prompt``/``detail``
    (and ``pages`` for a PDF or multi-page TIFF).

    Metadata values are ASCII on the wire, so a ``prompt`` may be percent-encoded (UTF-8).
    """
    meta = {key.lower(): value for key, value in (metadata or {}).items()}
    prefix = name.split("/", 1)[0].lower() if "/" in name else ""
    extraction = "schema" if meta.get("schema") else PREFIX_EXTRACTIONS.get(prefix)
    if extraction is not None:
        if extraction == "schema" and not meta.get("schema"):
            raise InvalidParameter("schema", "blobs under extract/ need a 'schema' metadata value naming a schema blob")
        prompt = unquote(meta["prompt"]) if meta.get("prompt") else ""
        return BlobJob(task=extraction, options=AnalysisOptions(prompt=prompt, detail=meta.get("detail") or None,
                                                                pages=meta.get("pages") or None),
                       extraction=extraction, schema_blob=unquote(meta["schema"]) if meta.get("schema") else None)
    task, prompt = PREFIX_TASKS.get(prefix, DEFAULT_TASK)
    if meta.get("task"):
        task = meta["task"].strip().lower()
        prompt = TASK_PROMPTS.get(task, prompt)
    if meta.get("prompt"):
        prompt = unquote(meta["prompt"])
    max_tokens = meta.get("max_tokens")
    try:
        tokens = int(max_tokens) if max_tokens else None
    except ValueError:
        raise InvalidParameter(
            "max_tokens", f"blob metadata max_tokens must be a whole number; got {max_tokens!r}"
        ) from None
    return BlobJob(task=task, options=AnalysisOptions(prompt=prompt, detail=meta.get("detail") or None,
                                                      task=task, max_tokens=tokens, pages=meta.get("pages") or None))


def result_name(name: str, suffix: str = ".json") -> str:
    """The result's blob name: ``<same path><suffix>``, never able to leave its container.

    ``.`` and ``..`` segments and empty segments are escaped (an HTTP layer could resolve
    them into another container's path); a name past Azure's 1,024-character limit keeps
    its start and gets a hash, so distinct names stay distinct.
    """
    segments = []
    for segment in name.replace("\\", "/").split("/"):
        if segment in ("", ".", ".."):
            segment = "%2E" * len(segment) if segment else "%2F"
        segments.append(segment)
    safe = "/".join(segments) + suffix
    if len(safe) > MAX_BLOB_NAME:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
        safe = safe[: MAX_BLOB_NAME - len(suffix) - 34] + "~" + digest + suffix
    return safe
