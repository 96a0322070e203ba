"""Callers' JSON Schemas for Azure OpenAI strict structured outputs: converted, bounded, safe to run.

Why a package: one concern in four modules, each usable alone and pure:

* :mod:`~shared.schemas.strict`: a caller's schema made into what strict mode accepts, compiled and cached,
  and replies checked against the caller's original schema; its public names are this package's;
* :mod:`~shared.schemas.limits`: strict mode's size limits (properties, nesting, enum values, characters);
* :mod:`~shared.schemas.safety`: what makes a schema safe to run (RE2 patterns, ``$ref`` loops).
* :mod:`~shared.schemas.pointers`: JSON Pointers into a schema and its local ``$ref`` s, for all three.
"""

from shared.schemas.strict import (
    MAX_ERRORS,
    MAX_SCHEMA_CHARS,
    CompiledSchema,
    SchemaRefused,
    canonical_json,
    compile_schema,
    schema_hash,
    to_strict_schema,
    validate_instance,
)

__all__ = [
    "MAX_ERRORS", "MAX_SCHEMA_CHARS", "CompiledSchema", "SchemaRefused", "canonical_json", "compile_schema",
    "schema_hash", "to_strict_schema", "validate_instance",
]
