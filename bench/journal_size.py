"""Journal bytes per message: N messages of a 120-character personalised text
written through the real path (JournalWriter plan, claim, outcome), then the
journal's tables and indexes measured. Prints figures (not a test).

    python bench/journal_size.py                       # SQLite, N=100000
    python bench/journal_size.py --n 1000000
    python bench/journal_size.py --pg postgresql://user@127.0.0.1:5432/db
    python bench/journal_size.py --pg auto             # a scratch server (tests/pgkit.py)
    python bench/journal_size.py --distinct            # every text different

The texts are a template over 20 first names (so ~20 distinct texts, as a
campaign's messages share few); ``--distinct`` adds the recipient's number to
each, the worst case for texts stored once. On SQLite the figure is ``dbstat``'s
pages of ``messages``, ``texts`` and their indexes; on PostgreSQL it is
``pg_total_relation_size`` of the two tables as written and after ``VACUUM
FULL`` (a claim and an outcome each leave a dead row version until vacuumed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.journal.journal import Journal  # noqa: E402
from runner.journal.where import Where, locate  # noqa: E402
from runner.journal.writer import Outcome, Planned  # noqa: E402

NAMES = (
    "Ana Lucía", "Bruno", "Carmen", "Diego", "Elena", "Fernando", "Gabriela",
    "Héctor", "Inés", "Javier", "Karina", "Luis", "María José", "Nicolás",
    "Olga", "Pablo", "Queralt", "Rosa", "Sergio", "Teresa",
)  # fmt: skip
TEMPLATE = (
    "Hola {name}, su cita en Clínica Ávila es el jueves 12 a las 10:30. "
    "Responda SI para confirmar o NO para cambiarla.{tail}"
)
BATCH = 1000  # rows a plan batch; a claim takes half


def text_for(i: int, distinct: bool, phone: str) -> str:
    text = TEMPLATE.format(
        name=NAMES[i % len(NAMES)], tail=f" Ref {phone}" if distinct else ""
    )
    return (text + " " * 120)[: max(120, len(text))]  # 120 characters at least


def fill(where: Where, n: int, distinct: bool) -> float:
    """Plan, claim and send ``n`` messages of one run's step; seconds taken."""
    j = Journal(where)
    started = time.monotonic()
    try:
        run = j.start_run("size-bench", "size-bench.yaml", {})
        claimer = j.worker.claimer()
        w = j.writer
        for start in range(0, n, BATCH):
            rows = []
            for i in range(start, min(n, start + BATCH)):
                phone = f"+346{i:08d}"
                rows.append(
                    Planned(
                        run,
                        "blast",
                        phone,
                        i + 1,
                        "main",
                        text_for(i, distinct, phone),
                        1,
                        i + 2,
                    )
                )
            w.plan(rows, wait=False)
        w.flush()
        after = 0
        while True:
            got = w.claim(run, "blast", "main", claimer, after, BATCH // 2)
            if not got:
                break
            for seq, phone, text, _segments, _row in got:
                assert text == text_for(seq - 1, distinct, phone)  # the exact text
                w.record_outcome(
                    Outcome(
                        run, "blast", phone, "sent", "main", 1, message_id=f"{seq:012d}"
                    )
                )
            after = got[-1][0]
        w.flush()
        j.worker.done(claimer)
    finally:
        j.close()
    return time.monotonic() - started


def sqlite_sizes(path: Path) -> dict[str, int]:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT d.name, coalesce(s.tbl_name, d.name), sum(d.pgsize) FROM dbstat d "
            "LEFT JOIN sqlite_master s ON s.name = d.name GROUP BY d.name"
        ).all()
    engine.dispose()
    return {f"{table}:{name}": int(size) for name, table, size in rows}


def pg_sizes(url: str, vacuum: bool) -> dict[str, int]:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    found: dict[str, int] = {}
    with engine.connect() as conn:
        for table in ("messages", "texts"):
            exists = conn.exec_driver_sql(f"SELECT to_regclass('{table}')").scalar()
            if exists is None:
                continue
            if vacuum:
                conn.exec_driver_sql(f"VACUUM FULL {table}")
            size = conn.exec_driver_sql(
                f"SELECT pg_total_relation_size('{table}')"
            ).scalar()
            found[table] = int(size or 0)
    engine.dispose()
    return found


def report(label: str, sizes: dict[str, int], n: int) -> None:
    kept = {k: v for k, v in sizes.items() if k.split(":")[0] in ("messages", "texts")}
    total = sum(kept.values())
    parts = ", ".join(f"{k.split(':')[-1]} {v / n:.0f}" for k, v in sorted(kept.items()))
    print(f"{label}: {total / n:.0f} B/message ({parts})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--pg", help="a PostgreSQL URL (an empty database), or 'auto'")
    ap.add_argument("--distinct", action="store_true", help="every text different")
    ap.add_argument("--no-sqlite", action="store_true")
    a = ap.parse_args()
    kind = "distinct texts" if a.distinct else "20 distinct texts"
    print(f"{a.n} messages of a 120-character text, {kind}")
    if not a.no_sqlite:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "journal.db"
            took = fill(Where(path=path), a.n, a.distinct)
            report(f"sqlite ({took:.0f} s)", sqlite_sizes(path), a.n)
            print(f"sqlite file: {path.stat().st_size / a.n:.0f} B/message")
    if a.pg:
        server = None
        url = a.pg
        if url == "auto":
            sys.path.insert(0, str(ROOT / "tests"))
            from pgkit import PostgresServer

            server = PostgresServer()
            url = server.new_database()
        try:
            took = fill(locate(url), a.n, a.distinct)
            report(f"postgresql as written ({took:.0f} s)", pg_sizes(url, False), a.n)
            report("postgresql after VACUUM FULL", pg_sizes(url, True), a.n)
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
