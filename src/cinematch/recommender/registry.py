"""Model registry: versioned model folders, `ops.model_registry` rows, champion alias, promote and rollback."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.log import get_logger, log_event
from cinematch.core.results import Result
from cinematch.core.settings import Settings
from cinematch.recommender.als import META_FILE as ALS_META
from cinematch.recommender.als import ALSModel
from cinematch.recommender.ranker import META as RANKER_META
from cinematch.recommender.ranker import Ranker
from cinematch.storage.audit import utcnow
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import query_rows

log = get_logger(__name__)

VERSION_RE = re.compile(r"version_\d{8}T\d{6}_\d{6}Z")
METADATA = "metadata.json"
CHAMPION_FILE = "CHAMPION"
RANKING_DIR = "ranking"
PRUNED_FILE = "PRUNED"  # a version whose large files were removed by retention (its metadata stays)
COLUMNS = ("version", "created_at", "status", "is_champion", "params", "metrics", "batch_ids", "data_checksum",
           "n_train", "n_test", "promotion", "path")  # fmt: skip


@dataclass(eq=False)
class ModelRecord(Result):
    """One row of ``ops.model_registry`` with its JSON columns decoded (a row of `cinematch models list`)."""

    version: str
    created_at: datetime
    status: str
    is_champion: bool
    params: dict[str, Any]
    metrics: dict[str, Any]
    batch_ids: list[str]
    data_checksum: str | None
    n_train: int | None
    n_test: int | None
    promotion: dict[str, Any]
    path: str | None


@dataclass(eq=False)
class ChampionChange(Result):
    """A promotion or rollback: the new champion, the one it replaced, and why."""

    champion: str
    previous: str | None
    action: str
    reason: str


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


def save_version(
    settings: Settings,
    model: ALSModel,
    metadata: dict[str, Any],
    version: str | None = None,
    ranker: Ranker | None = None,
) -> Path:
    """Write the rating model, the ranking model and the metadata into a temp folder, then rename it (atomic)."""
    version = version or new_version()
    target = model_dir(settings, version)
    tmp = settings.models_dir / f".tmp-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    if ranker is not None:
        ranker.save(tmp / RANKING_DIR)
    (tmp / METADATA).write_text(json.dumps({"version": version, **metadata}, indent=2, default=str) + "\n")
    os.replace(tmp, target)
    return target


def has_files(settings: Settings, version: str) -> bool:
    """Whether the version's model files are all there (not removed by retention, not damaged)."""
    path = model_dir(settings, version)
    return (path / METADATA).is_file() and (path / ALS_META).is_file() and not (path / PRUNED_FILE).exists()


def load_metadata(settings: Settings, version: str) -> dict[str, Any]:
    path = model_dir(settings, version) / METADATA
    if not path.is_file():
        raise CineMatchError(
            f"model {version} is missing or damaged ({path} not found); "
            "run `cinematch models rollback` or train a new model with `cinematch train`"
        )
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


def load_model(settings: Settings, version: str) -> ALSModel:
    path = model_dir(settings, version)
    try:
        return ALSModel.load(path)
    except (BadInput, OSError, ValueError) as exc:
        raise CineMatchError(
            f"model {version} cannot be loaded ({exc}); run `cinematch models rollback` or retrain"
        ) from None


# The ranking model loaded last, by its folder and its files' identity: a process that trains, compares and
# publishes period after period (a replay, a DAG run in one worker) reads each version's matrices once, not at
# every step. One entry only: an EASE model holds an items x items matrix.
_last_ranker: tuple[tuple[str, int, int], Ranker] | None = None


def _ranker_key(path: Path) -> tuple[str, int, int]:
    meta = (path / RANKER_META).stat()
    return str(path.resolve()), meta.st_mtime_ns, meta.st_ino


def load_ranker(settings: Settings, version: str) -> Ranker | None:
    """The version's ranking model, or None for versions from before ranking models (their ALS ranks)."""
    global _last_ranker
    path = model_dir(settings, version) / RANKING_DIR
    if not path.exists():
        return None
    try:
        key = _ranker_key(path)
        if _last_ranker is not None and _last_ranker[0] == key:
            return _last_ranker[1]
        ranker = Ranker.load(path)
    except (BadInput, OSError, ValueError, KeyError) as exc:
        raise CineMatchError(
            f"ranking model of {version} cannot be loaded ({exc}); run `cinematch models rollback` or retrain"
        ) from None
    _last_ranker = (key, ranker)
    return ranker


def remember_ranker(settings: Settings, version: str, ranker: Ranker) -> None:
    """Make ``ranker``, just saved as ``version``'s, the one ``load_ranker`` returns for it without reading it back.

    Its EASE weights are compacted exactly as storing and loading them gives (``EASE.compact``) and iALS keeps
    its float32 factors as stored, so it scores exactly as the loaded model would.
    """
    global _last_ranker
    path = model_dir(settings, version) / RANKING_DIR
    with contextlib.suppress(OSError):
        _last_ranker = (_ranker_key(path), ranker)


def register(con: Warehouse, settings: Settings, version: str, metadata: dict[str, Any], status: str) -> None:
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


def _records(con: Warehouse, where: str, params: list[Any] | None = None) -> list[ModelRecord]:
    """Registry rows as records, JSON columns decoded (DuckDB returns their text, PostgreSQL decoded values)."""
    rows = query_rows(con, f"select {', '.join(COLUMNS)} from ops.model_registry {where}", params)
    for row in rows:
        for key in ("params", "metrics", "batch_ids", "promotion"):
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
    return [ModelRecord(**row) for row in rows]


def list_models(con: Warehouse) -> list[ModelRecord]:
    """Every registered version, newest first."""
    return _records(con, "order by version desc")


def get_model(con: Warehouse, version: str) -> ModelRecord:
    rows = _records(con, "where version = ?", [validate_version(version)])
    if not rows:
        raise BadInput(f"unknown model version {version}; see `cinematch models list`")
    return rows[0]


def champion(con: Warehouse) -> ModelRecord | None:
    """The registry row of the current champion, or None before the first promotion."""
    rows = _records(con, "where is_champion")
    return rows[0] if rows else None


def _write_alias(settings: Settings, version: str) -> None:
    """The CHAMPION file lets readers without the warehouse (serving) follow the alias."""
    tmp = settings.models_dir / f".{CHAMPION_FILE}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, settings.models_dir / CHAMPION_FILE)


def write_alias(con: Warehouse, settings: Settings) -> str | None:
    """Point the CHAMPION file at the committed champion (call after the commit that changed it)."""
    current = champion(con)
    if current is not None and champion_alias(settings) != current.version:
        _write_alias(settings, current.version)
    return current.version if current else None


def champion_alias(settings: Settings) -> str | None:
    path = settings.models_dir / CHAMPION_FILE
    return path.read_text().strip() or None if path.is_file() else None


def _set_champion(
    con: Warehouse, settings: Settings, version: str, action: str, reason: str, alias: bool = True
) -> ChampionChange:
    if not has_files(settings, version):
        raise CineMatchError(
            f"model files of {version} are missing under {settings.models_dir}; it cannot be champion "
            "(run `cinematch models rollback` or retrain)"
        )
    current = champion(con)
    previous = current.version if current else None
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
    return ChampionChange(champion=version, previous=previous, action=action, reason=reason)


def promote(
    con: Warehouse, settings: Settings, version: str, reason: str = "manual", alias: bool = True
) -> ChampionChange:
    """Make ``version`` the champion (a manual promotion skips the "not worse" rule)."""
    get_model(con, version)
    return _set_champion(con, settings, version, "promote", reason, alias)


def rollback(con: Warehouse, settings: Settings, alias: bool = True) -> ChampionChange:
    """Return to the champion before the current one, skipping versions whose files are gone."""
    current = champion(con)
    if current is None:
        raise BadInput("there is no champion to roll back from; train and promote a model first")
    history = con.execute(
        "select version from ops.champion_history where version <> ? order by seq desc", [current.version]
    ).fetchall()
    for (candidate,) in history:
        if has_files(settings, candidate):
            return _set_champion(con, settings, candidate, "rollback", f"rolled back from {current.version}", alias)
    raise BadInput(f"no earlier champion to roll back to from {current.version}")


def decide_promotion(
    challenger_rmse: float,
    champion_rmse: float | None,
    tolerance: float,
    champion_version: str | None,
    ranking: dict[str, Any] | None = None,
    ndcg_tolerance: float = 0.0,
) -> dict[str, Any]:
    """Promote when there is no champion, or when neither served quality nor predicted ratings got worse.

    ``ranking`` holds both models' NDCG@10 on the same held-out interactions and the paired bootstrap's
    95% interval of the difference (challenger − champion, over users); the served lists are "not worse" when
    its lower bound is >= −``ndcg_tolerance``. Ratings are "not worse" when the challenger's RMSE is at most the
    champion's x (1 + ``tolerance``).
    """
    if champion_rmse is None:
        promoted, why = True, "first model: no champion yet"
        rmse_ok = ndcg_ok = True
    else:
        rmse_ok = challenger_rmse <= champion_rmse * (1 + tolerance)
        why_rmse = (f"rmse {challenger_rmse:.4f} {'<=' if rmse_ok else '>'} champion {champion_rmse:.4f} "
                    f"x (1 + {tolerance})")  # fmt: skip
        if ranking is None:
            ndcg_ok, why_ndcg = True, "no ranking comparison"
        else:
            ndcg_ok = ranking["ndcg_diff_low"] >= -ndcg_tolerance
            why_ndcg = (f"ndcg@10 {ranking['challenger_ndcg']:.4f} vs champion {ranking['champion_ndcg']:.4f}, "
                        f"95% lower bound of the difference {ranking['ndcg_diff_low']:+.4f} "
                        f"{'>=' if ndcg_ok else '<'} -{ndcg_tolerance}")  # fmt: skip
        promoted = rmse_ok and ndcg_ok
        why = f"{why_ndcg}; {why_rmse}"
    return {
        "decision": "promoted" if promoted else "rejected",
        "challenger_rmse": challenger_rmse,
        "champion_rmse": champion_rmse,
        "champion_version": champion_version,
        "tolerance": tolerance,
        "ndcg_tolerance": ndcg_tolerance,
        "rmse_not_worse": rmse_ok,
        "ndcg_not_worse": ndcg_ok,
        **(ranking or {}),
        "reason": why,
    }


def same_rows(promotion: dict[str, Any] | None) -> dict[str, Any]:
    """A version's and its champion's scores on the same held-out rows (its promotion comparison), for display."""
    p = promotion or {}
    return {"compared_with": p.get("champion_version"), "ndcg_same_rows": p.get("challenger_ndcg"),
            "champion_ndcg_same_rows": p.get("champion_ndcg"), "rmse_same_rows": p.get("challenger_rmse_same_rows"),
            "champion_rmse_same_rows": p.get("champion_rmse_same_rows")}  # fmt: skip


def prune_files(con: Warehouse, settings: Settings, keep_last: int) -> list[str]:
    """Remove the large files of versions that are not the champion, the previous champion or among the last
    ``keep_last`` versions; their metadata and registry rows stay (``models list`` still shows them)."""
    versions = sorted(p.name for p in settings.models_dir.glob("version_*") if VERSION_RE.fullmatch(p.name))
    keep = set(versions[-keep_last:]) if keep_last > 0 else set()
    current = champion(con)
    if current is not None:
        keep.add(current.version)
        prev = con.execute(
            "select version from ops.champion_history where version <> ? order by seq desc limit 1",
            [current.version],
        ).fetchall()
        keep.update(v for (v,) in prev)
    removed = []
    for version in versions:
        path = model_dir(settings, version)
        if version in keep or (path / PRUNED_FILE).exists():
            continue
        (path / PRUNED_FILE).write_text("large files removed by retention (CINEMATCH_MODEL_KEEP_VERSIONS)\n")
        for child in path.iterdir():
            if child.name in (METADATA, PRUNED_FILE):
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        removed.append(version)
    if removed:
        log_event(log, "model_files_pruned", versions=len(removed), kept=len(keep))
    return removed
