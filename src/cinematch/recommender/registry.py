"""Model registry: versioned model folders, `ops.model_registry` rows, champion alias, promote and rollback."""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from cinematch._log import get_logger, log_event
from cinematch.errors import BadInput, CineMatchError
from cinematch.recommender.als import ALSModel
from cinematch.settings import Settings
from cinematch.warehouse import query_rows, utcnow

log = get_logger(__name__)

VERSION_RE = re.compile(r"version_\d{8}T\d{6}_\d{6}Z")
METADATA = "metadata.json"
CHAMPION_FILE = "CHAMPION"

HISTORY_DDL = """create table if not exists ops.champion_history (
    seq bigint primary key, version varchar not null, action varchar not null, changed_at timestamp not null,
    previous varchar, reason varchar)"""


def new_version(now: datetime | None = None) -> str:
    """``version_<UTC timestamp>``: sortable by name, as the original's "find latest model" expects."""
    return f"version_{(now or utcnow()):%Y%m%dT%H%M%S_%f}Z"


def validate_version(version: str) -> str:
    """Versions become paths: only the exact ``version_<timestamp>Z`` shape is accepted."""
    if not VERSION_RE.fullmatch(version or ""):
        raise BadInput(f"not a model version: {version!r}; see `cinematch models list` for valid versions")
    return version


def model_dir(settings: Settings, version: str) -> Path:
    return settings.models_dir / validate_version(version)


def save_version(settings: Settings, model: ALSModel, metadata: dict[str, Any], version: str | None = None) -> Path:
    """Write the model and its metadata into a temp folder, then rename it into place (atomic)."""
    version = version or new_version()
    target = model_dir(settings, version)
    tmp = settings.models_dir / f".tmp-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    (tmp / METADATA).write_text(json.dumps({"version": version, **metadata}, indent=2, default=str) + "\n")
    os.replace(tmp, target)
    return target


def load_metadata(settings: Settings, version: str) -> dict[str, Any]:
    path = model_dir(settings, version) / METADATA
    if not path.is_file():
        raise CineMatchError(
            f"model {version} is missing or damaged ({path} not found); "
            "run `cinematch models rollback` or train a new model with `cinematch train`"
        )
    return json.loads(path.read_text())


def load_model(settings: Settings, version: str) -> ALSModel:
    path = model_dir(settings, version)
    try:
        return ALSModel.load(path)
    except (BadInput, OSError, ValueError) as exc:
        raise CineMatchError(
            f"model {version} cannot be loaded ({exc}); run `cinematch models rollback` or retrain"
        ) from None


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(HISTORY_DDL)


def register(
    con: duckdb.DuckDBPyConnection, settings: Settings, version: str, metadata: dict[str, Any], status: str
) -> None:
    """Insert the registry row of a saved version (the files exist before the row does)."""
    con.execute(
        "insert into ops.model_registry values (?, ?, ?, false, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            version,
            utcnow(),
            status,
            json.dumps(metadata.get("params", {})),
            json.dumps(metadata.get("metrics", {})),
            json.dumps(metadata.get("batch_ids", [])),
            metadata.get("data_checksum"),
            metadata.get("n_train"),
            metadata.get("n_test"),
            json.dumps(metadata.get("promotion", {}), default=str),
            str(model_dir(settings, version)),
        ],
    )


def _decode(row: dict) -> dict:
    for key in ("params", "metrics", "batch_ids", "promotion"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row


def list_models(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every registered version, newest first."""
    return [_decode(r) for r in query_rows(con, "select * from ops.model_registry order by version desc")]


def get_model(con: duckdb.DuckDBPyConnection, version: str) -> dict:
    rows = query_rows(con, "select * from ops.model_registry where version = ?", [validate_version(version)])
    if not rows:
        raise BadInput(f"unknown model version {version}; see `cinematch models list`")
    return _decode(rows[0])


def champion(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The registry row of the current champion, or None before the first promotion."""
    rows = query_rows(con, "select * from ops.model_registry where is_champion")
    return _decode(rows[0]) if rows else None


def _write_alias(settings: Settings, version: str) -> None:
    """The CHAMPION file lets readers without the warehouse (serving) follow the alias."""
    tmp = settings.models_dir / f".{CHAMPION_FILE}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, settings.models_dir / CHAMPION_FILE)


def write_alias(con: duckdb.DuckDBPyConnection, settings: Settings) -> str | None:
    """Point the CHAMPION file at the committed champion (call after the commit that changed it)."""
    current = champion(con)
    if current is not None and champion_alias(settings) != current["version"]:
        _write_alias(settings, current["version"])
    return current["version"] if current else None


def champion_alias(settings: Settings) -> str | None:
    path = settings.models_dir / CHAMPION_FILE
    return path.read_text().strip() or None if path.is_file() else None


def _set_champion(
    con: duckdb.DuckDBPyConnection, settings: Settings, version: str, action: str, reason: str, alias: bool = True
) -> dict[str, Any]:
    ensure_tables(con)
    if not (model_dir(settings, version) / METADATA).is_file():
        raise CineMatchError(
            f"model files of {version} are missing under {settings.models_dir}; it cannot be champion "
            "(run `cinematch models rollback` or retrain)"
        )
    current = champion(con)
    previous = current["version"] if current else None
    seq = con.execute("select coalesce(max(seq), 0) + 1 from ops.champion_history").fetchall()[0][0]
    con.execute("update ops.model_registry set is_champion = false where is_champion")
    con.execute("update ops.model_registry set is_champion = true, status = 'champion' where version = ?", [version])
    if previous and previous != version:
        con.execute("update ops.model_registry set status = 'retired' where version = ?", [previous])
    con.execute(
        "insert into ops.champion_history values (?, ?, ?, ?, ?, ?)", [seq, version, action, utcnow(), previous, reason]
    )
    if alias:  # inside a caller's transaction: the caller writes it after its commit (write_alias)
        _write_alias(settings, version)
    log_event(log, "champion_changed", version=version, previous=previous, action=action)
    return {"champion": version, "previous": previous, "action": action, "reason": reason}


def promote(
    con: duckdb.DuckDBPyConnection, settings: Settings, version: str, reason: str = "manual", alias: bool = True
) -> dict:
    """Make ``version`` the champion (a manual promotion skips the "not worse" rule)."""
    get_model(con, version)
    return _set_champion(con, settings, version, "promote", reason, alias)


def rollback(con: duckdb.DuckDBPyConnection, settings: Settings, alias: bool = True) -> dict:
    """Return to the champion before the current one, skipping versions whose files are gone."""
    ensure_tables(con)
    current = champion(con)
    if current is None:
        raise BadInput("there is no champion to roll back from; train and promote a model first")
    history = con.execute(
        "select version from ops.champion_history where version <> ? order by seq desc", [current["version"]]
    ).fetchall()
    for (candidate,) in history:
        if (model_dir(settings, candidate) / METADATA).is_file():
            return _set_champion(con, settings, candidate, "rollback", f"rolled back from {current['version']}", alias)
    raise BadInput(f"no earlier champion to roll back to from {current['version']}")


def decide_promotion(
    challenger_rmse: float, champion_rmse: float | None, tolerance: float, champion_version: str | None
) -> dict[str, Any]:
    """A challenger is promoted when there is no champion or it is not worse on the same evaluation data."""
    if champion_rmse is None:
        promoted, why = True, "first model: no champion yet"
    else:
        promoted = challenger_rmse <= champion_rmse * (1 + tolerance)
        why = (
            f"challenger rmse {challenger_rmse:.4f} {'<=' if promoted else '>'} champion rmse "
            f"{champion_rmse:.4f} x (1 + {tolerance})"
        )
    return {
        "decision": "promoted" if promoted else "rejected",
        "challenger_rmse": challenger_rmse,
        "champion_rmse": champion_rmse,
        "champion_version": champion_version,
        "tolerance": tolerance,
        "reason": why,
    }
