"""A home folder that was copied or moved keeps reading its own MLflow store's artifacts.

MLflow records artifact locations as absolute `file://` URIs: each experiment's, run's, logged
model's and registered model version's, and each dataset's source. In a copied or moved home they
still name the folder the store was made in, whose files would be read (or be missing, once it is
gone). `relocate_store`, run on opening a home's SQLite store, finds the homes the store's
experiments were made in (an experiment we create keeps its artifacts under
`<home>/mlartifacts/<experiment name>`) and rewrites every location under another home's folder to
the same place under this one: one SQLite transaction, so the store is rewritten whole or left as it
was, and nothing outside the store's own database is written.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

ARTIFACTS = "mlartifacts"
# Every column of MLflow's SQLite schema that records an absolute location of the store's files.
LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                    ("logged_models", "artifact_location"), ("model_versions", "source"),
                    ("model_versions", "storage_location"), ("datasets", "dataset_source"))

log = logging.getLogger(__name__)


def former_homes(db: sqlite3.Connection, home: Path) -> list[str]:
    """The `file://` URIs of the homes other than `home` whose artifact folders the store's experiments name."""
    roots = set()
    for name, location in db.execute("SELECT name, artifact_location FROM experiments"):
        suffix = f"/{ARTIFACTS}/{name}"
        if location and location.startswith("file://") and location.endswith(suffix):
            roots.add(location.removesuffix(suffix))
    return sorted(roots - {home.as_uri()})


def relocate_store(db_path: Path, home: Path) -> list[str]:
    """Point the locations that the SQLite store at `db_path` records under a former home at `home`;
    returns the former homes' URIs (none when the store was made where it is, or holds no experiments
    yet). All or nothing."""
    if not db_path.is_file():
        return []
    db = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    try:
        columns = [(table, column) for table, column in LOCATION_COLUMNS
                   if column in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}]
        former = former_homes(db, home) if ("experiments", "artifact_location") in columns else []
        if not former:
            return []
        db.execute("BEGIN IMMEDIATE")
        try:
            for old in former:
                for table, column in columns:
                    db.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?) WHERE instr({column}, ?) > 0",
                               (f"{old}/", f"{home.as_uri()}/", f"{old}/"))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.close()
    log.warning("this home was moved or copied from %s: its store now reads its artifacts under %s",
                ", ".join(former), home)
    return former
