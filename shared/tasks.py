"""The task vocabulary: what a caller may ask for, in one place every layer can import.

Tasks, detail levels, the default prompt, the blob flow's path prefixes and the prompt of each
task used to live in six modules (analysis, tokens, imaging, pipeline, the local provider, config),
and the local provider had to reach up into the blob pipeline to learn which prompts it may
answer. Names only, no behaviour: this module imports nothing from the package.
"""

from __future__ import annotations

DEFAULT_PROMPT = "Describe this image"

#: Image detail levels of the chat completions API; ``auto`` lets the service decide.
DETAILS = ("low", "high", "auto")

#: What a single-image analysis is for; it steers the detail choice and the offline engine's answer.
TASKS = (
    "describe",
    "ocr",
    "table_extraction",
    "detailed_analysis",
    "classification",
    "object_detection",
    "quick_summary",
)
#: Reading text and tables needs the high-resolution tiles; labelling or summarising does not.
HIGH_DETAIL_TASKS = frozenset({"ocr", "table_extraction", "detailed_analysis"})
LOW_DETAIL_TASKS = frozenset({"classification", "object_detection", "quick_summary"})
#: Tasks that read text: their images are decoded in full at "high" (shared.imaging.HIGH_DRAFT_HEADROOM).
TEXT_TASKS = frozenset({"ocr", "table_extraction"})

#: Structured extraction kinds (``/api/extract/...``, ``extract`` in the CLI and the blob flow).
EXTRACTION_KINDS = ("invoice", "table", "schema")

#: The prompt of each task when the caller gives none (the blob flow, the offline engine's check).
TASK_PROMPTS: dict[str, str] = {
    "describe": DEFAULT_PROMPT,
    "ocr": "Transcribe all text in this image exactly, line by line, in reading order.",
    "classification": "Classify this image: give the main category and the key objects.",
    "object_detection": "List the objects in this image and where each one is.",
    "detailed_analysis": "Analyse this image in detail: content, text, layout and notable features.",
    "quick_summary": "Summarise this image in one or two sentences.",
}

#: Blob flow: first path segment -> (task, default prompt). Unknown prefixes describe the image.
PREFIX_TASKS: dict[str, tuple[str, str]] = {
    prefix: (task, TASK_PROMPTS[task])
    for prefix, task in (
        ("describe", "describe"),
        ("ocr", "ocr"),
        ("classify", "classification"),
        ("objects", "object_detection"),
        ("detailed", "detailed_analysis"),
        ("summary", "quick_summary"),
    )
}
DEFAULT_TASK = ("describe", DEFAULT_PROMPT)
#: Blob flow: first path segment -> structured extraction kind (see :mod:`shared.extraction`).
PREFIX_EXTRACTIONS = {"invoices": "invoice", "tables": "table", "extract": "schema"}

#: The prompts the offline engine may answer: anything else is a question it cannot.
KNOWN_PROMPTS = frozenset({DEFAULT_PROMPT, *TASK_PROMPTS.values()})
