"""The JSON metadata file of a saved model: read and checked for its format version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cinematch.core.errors import BadInput


def read_meta(directory: Path, name: str, version: int, *, missing: str, unsupported: str) -> dict[str, Any]:
    """The metadata file ``name`` of the model saved in ``directory``, refused unless it has format ``version``.

    ``missing`` is the whole error when the file is absent; ``unsupported`` words the error for another format
    version (``"{directory}: {unsupported} {version!r}"``), so each model keeps its own messages.
    """
    path = Path(directory) / name
    if not path.is_file():
        raise BadInput(missing)
    meta: dict[str, Any] = json.loads(path.read_text())
    if meta.get("format_version") != version:
        raise BadInput(f"{directory}: {unsupported} {meta.get('format_version')!r}")
    return meta
