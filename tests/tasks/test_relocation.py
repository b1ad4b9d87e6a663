"""`relocate_store` on a small SQLite file with MLflow's location columns: all or nothing."""

from __future__ import annotations

import sqlite3

import pytest

from tasks.relocation import relocate_store


def _store(path, old_home):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE experiments (name TEXT, artifact_location TEXT)")
        db.execute("CREATE TABLE runs (artifact_uri TEXT)")
        db.executemany("INSERT INTO experiments VALUES (?, ?)",
                       [("Default", "/elsewhere/mlruns/0"), ("flow", f"{old_home.as_uri()}/mlartifacts/flow")])
        db.execute("INSERT INTO runs VALUES (?)", (f"{old_home.as_uri()}/mlartifacts/flow/1/artifacts",))
    db.close()


def _rows(path):
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT * FROM experiments").fetchall() + db.execute("SELECT * FROM runs").fetchall()
    db.close()
    return rows


def test_a_store_points_at_its_new_home_once(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new home"
    _store(tmp_path / "mlflow.db", old)
    assert relocate_store(tmp_path / "mlflow.db", new) == [old.as_uri()]
    assert _rows(tmp_path / "mlflow.db") == [("Default", "/elsewhere/mlruns/0"),
                                             ("flow", f"{new.as_uri()}/mlartifacts/flow"),
                                             (f"{new.as_uri()}/mlartifacts/flow/1/artifacts",)]
    assert relocate_store(tmp_path / "mlflow.db", new) == []


def test_a_failed_relocation_leaves_the_store_as_it_was(tmp_path):
    _store(tmp_path / "mlflow.db", tmp_path / "old")
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # the second table's update fails
        db.execute("CREATE TRIGGER refuse BEFORE UPDATE ON runs BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    db.close()
    before = _rows(tmp_path / "mlflow.db")
    with pytest.raises(sqlite3.IntegrityError, match="disk full"):
        relocate_store(tmp_path / "mlflow.db", tmp_path / "new")
    assert _rows(tmp_path / "mlflow.db") == before
