"""OpenLineage names of what CineMatch stores: the warehouse's tables and HOME's folders (docs/lineage.md).

Following the OpenLineage naming spec, a dataset is (namespace, name): the namespace names the data source, the
name the dataset inside it.

- PostgreSQL warehouse: namespace ``postgres://{host}:{port}``, name ``{database}.{schema}.{table}`` (the spec's
  own scheme). The host, port and database come from the parsed connection string; user and password never do.
- DuckDB warehouse: namespace ``duckdb://{hostname}{absolute path of the file}`` (the spec has no DuckDB entry; a
  DuckDB data source is one file on one machine), name ``{catalog}.{schema}.{table}`` where the catalog is the
  file's stem, as DuckDB names it (``warehouse``).
- Folders of HOME (landing files, model versions, serving views): namespace ``file://{hostname}``, name the
  absolute path without its leading ``/`` (what the Airflow provider makes of a ``file://`` URL).
"""

from __future__ import annotations

import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from cinematch.core.settings import Settings

__all__ = ["Datasource", "file_dataset", "warehouse_source"]

DEFAULT_PG_PORT = "5432"


@dataclass(frozen=True)
class Datasource:
    """A warehouse as OpenLineage sees it: its namespace and the database part of its dataset names."""

    namespace: str
    database: str

    def table(self, qualified: str) -> tuple[str, str]:
        """(namespace, name) of ``schema.table``."""
        return self.namespace, f"{self.database}.{qualified}"


def warehouse_source(settings: Settings) -> Datasource:
    """The warehouse's data source: PostgreSQL when ``CINEMATCH_DATABASE_URL`` is set, else the DuckDB file."""
    if settings.database_url is None:
        path = settings.duckdb_path
        return Datasource(f"duckdb://{socket.gethostname()}{path.as_posix()}", path.stem)
    from cinematch.core.secrets import database_target, parse_database_url

    # database_target prints host, port and database only in the shapes real ones have (a fragment of a
    # mis-parsed password becomes "?"), and the password as ***; only host, port and path are kept from it.
    target = urllib.parse.urlsplit(database_target(parse_database_url(settings.database_url.get_secret_value())))
    netloc = target.netloc.rpartition("@")[2]
    first = urllib.parse.urlsplit("//" + netloc.split(",")[0])  # a multi-host string: its first host
    host, port = first.hostname or "", str(first.port or "")
    if not host:  # a Unix socket (host=/run/postgresql in the query): the server of this machine
        host, port = "localhost", urllib.parse.parse_qs(target.query).get("port", [""])[0]
    host = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets
    return Datasource(f"postgres://{host}:{port or DEFAULT_PG_PORT}", target.path.lstrip("/") or "postgres")


def file_dataset(path: Path) -> tuple[str, str]:
    """(namespace, name) of a file or folder of this machine."""
    return f"file://{socket.gethostname()}", path.expanduser().resolve().as_posix().lstrip("/")
