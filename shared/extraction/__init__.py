"""Structured extraction from images and documents: an invoice, a table, or any JSON Schema.

* :mod:`~shared.extraction.extract`: the service (strict ``response_format``, validation, one re-ask,
  an honest failure); its public names are this package's;
* :mod:`~shared.extraction.targets`: the built-in targets' models and the checks on what was read.
"""

from shared.extraction.extract import (
    EXTRACTION_MAX_TOKENS,
    MAX_RAW_REPLY_CHARS,
    PROMPTS,
    SYSTEM_PROMPT,
    ExtractionFailed,
    StructuredReply,
    ask_structured,
    default_max_tokens,
    extract,
    model_format,
    parse_reply,
    pydantic_check,
    response_format,
    strip_fences,
)
from shared.extraction.targets import (
    ISO_4217,
    Customer,
    Invoice,
    LineItem,
    Table,
    TableGrid,
    Vendor,
    invoice_warnings,
    table_from_grid,
)

__all__ = [
    "EXTRACTION_MAX_TOKENS", "ISO_4217", "MAX_RAW_REPLY_CHARS", "PROMPTS", "SYSTEM_PROMPT", "Customer",
    "ExtractionFailed", "Invoice", "LineItem", "StructuredReply", "Table", "TableGrid", "Vendor", "ask_structured",
    "default_max_tokens", "extract", "invoice_warnings", "model_format", "parse_reply", "pydantic_check",
    "response_format", "strip_fences", "table_from_grid",
]
