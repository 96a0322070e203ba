"""JSON Pointers (RFC 6901) into a caller's schema: written in error messages, read from local ``$ref`` s.

Why a module of its own: the conversion (:mod:`~shared.schemas.strict`), the size limits
(:mod:`~shared.schemas.limits`) and the safety checks (:mod:`~shared.schemas.safety`) all name places in
the caller's schema and follow its references; the ``~0``/``~1`` escaping is written once, here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def pointer(path: Iterable[object]) -> str:
    """The JSON Pointer of ``path`` (``""`` for the root), tokens escaped."""
    return "".join("/" + str(token).replace("~", "~0").replace("/", "~1") for token in path)


def ref_path(ref: str) -> tuple[str, ...] | None:
    """The path a local ``$ref`` names (``#`` is the root); None for any other reference."""
    if ref == "#":
        return ()
    if not ref.startswith("#/"):
        return None
    return tuple(token.replace("~1", "/").replace("~0", "~") for token in ref[2:].split("/"))


def resolve_local(root: dict[str, Any], ref: str) -> Any:
    """The node a local ``$ref`` points at in ``root``, or None if it points nowhere."""
    path = ref_path(ref)
    if path is None:
        return None
    node: Any = root
    for token in path:
        if not isinstance(node, dict) or token not in node:
            return None
        node = node[token]
    return node
