"""The writer lock of a PostgreSQL warehouse: a session advisory lock shared by every writer command."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cinematch.core.errors import LockBusy
from cinematch.core.log import get_logger, log_event

if TYPE_CHECKING:
    from cinematch.storage.postgres import PgConnection

__all__ = ["CONCURRENT_COMMANDS", "WRITER_LOCK", "writer_lock"]

log = get_logger(__name__)

WRITER_LOCK = 0x43494E454D41_02  # pg_advisory_lock key (any fixed bigint) shared by writer commands
# Commands that run concurrently across machines: ingestion relies on the ingestion_metadata primary key.
CONCURRENT_COMMANDS = ("ingest", "airflow ingest_batch")


@contextmanager
def writer_lock(con: PgConnection, command: str, timeout: float) -> Iterator[None]:
    """Serialize writer commands across machines with a session advisory lock; ingestion does not take it.

    PostgreSQL releases the lock when the session ends, also when the process is killed.
    """
    if command.startswith(CONCURRENT_COMMANDS):
        yield
        return
    pg = con.raw()
    deadline = time.monotonic() + timeout
    announced = False
    while not pg.execute("select pg_try_advisory_lock(%s)", [WRITER_LOCK]).fetchall()[0][0]:
        holder = _lock_holder(pg)
        if time.monotonic() >= deadline:
            raise LockBusy(
                f"another cinematch command ({holder}) is writing to this PostgreSQL warehouse; "
                "wait for it to finish and run this again"
            )
        if not announced:
            log_event(log, "waiting_for_lock", holder=holder, where="postgres")
            announced = True
        time.sleep(0.2)
    try:
        yield
    finally:
        if not pg.closed:
            if con.in_transaction:
                pg.execute("rollback")
            pg.execute("select pg_advisory_unlock(%s)", [WRITER_LOCK])


def _lock_holder(pg: Any) -> str:
    rows = pg.execute(
        """select a.application_name, a.client_addr::text from pg_locks l join pg_stat_activity a using (pid)
           where l.locktype = 'advisory' and l.granted and ((l.classid::bigint << 32) | l.objid::bigint) = %s
           limit 1""",
        [WRITER_LOCK],
    ).fetchall()
    if not rows:
        return "unknown"
    return f"{rows[0][0] or 'unknown'} from {rows[0][1] or 'a local socket'}"
