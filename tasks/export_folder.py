"""The folder `adapterflow export` writes, read back and checked, and where one may be written.

    <folder>/manifest.json                      format, origin, the unit keys and every other file's SHA-256
    <folder>/units/<unit key>/unit.json         the run's tags, params, metrics and model input example
    <folder>/units/<unit key>/adapter/          its fitted folder, source adapters bundled

An export is written only where nothing is lost: a new or empty folder, or an earlier export
(recognised by its manifest, holding nothing else) that the user asks to replace; never a store
nor a folder in or around one. Reading it checks the manifest, every file against its checksum
(none missing, none added) and every unit record before anything is read into a store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from peft_core.errors import DataError

FORMAT = 2  # 1: no checksums
MANIFEST = "manifest.json"
UNITS = "units"
UNIT_FILE = "unit.json"
UNIT_RECORD = {"run_name": str, "run_id": str, "tags": dict, "params": dict, "metrics": dict, "example_rows": list}
REQUIRED_TAGS = ("stage", "task", "method")  # the tags a unit record must carry
AGAIN = "export it again with `adapterflow export`"


@dataclass(frozen=True)
class ExportedUnit:
    key: str
    folder: Path  # <export>/units/<key>
    record: dict  # its unit.json

    @property
    def label(self) -> str:
        tags = self.record["tags"]
        return f"{self.key} ({tags['stage']}/{tags['task']}/{tags['method']})"


def check_destination(folder: Path, stores: Iterable[Path], overwrite: bool) -> None:
    """Refuse a destination whose files an export would destroy, in one line naming it and the fix."""
    folder = folder.resolve()
    for store in (s.resolve() for s in stores):
        if folder == store or store in folder.parents or folder in store.parents:
            where = "is" if folder == store else "is inside" if store in folder.parents else "holds"
            raise DataError(f"export folder {folder} {where} the store {store}; export to a folder outside it")
    blocking = next((p for p in reversed(folder.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise DataError(f"export folder {folder} cannot be made: {blocking} is a file; pass a folder you can write")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise DataError(f"export folder {folder} is a file; pass a new folder to export to")
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return
    if not _is_export(folder, entries):
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise DataError(f"export folder {folder} exists and is not an adapterflow export (it holds {shown}); "
                        "pass a new folder, or an earlier export with --overwrite")
    if not overwrite:
        raise DataError(f"export folder {folder} holds an earlier export; pass --overwrite to replace it, "
                        "or a new folder")


def _is_export(folder: Path, entries: list[str]) -> bool:
    if MANIFEST not in entries or not set(entries) <= {MANIFEST, UNITS}:
        return False
    try:
        return "format" in json.loads((folder / MANIFEST).read_text())
    except (ValueError, TypeError, OSError):
        return False


def write_unit(root: Path, key: str, record: dict) -> Path:
    """Write a unit's record under `root`; returns its folder, where its adapter folder goes."""
    folder = root / UNITS / key
    folder.mkdir(parents=True, exist_ok=True)
    (folder / UNIT_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))
    return folder


def write_manifest(root: Path, keys: list[str], **origin) -> None:
    """The manifest of the units written under `root`, with the checksum of every file there."""
    manifest = {"format": FORMAT, **origin, "units": keys, "files": file_checksums(root)}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1))


def file_checksums(root: Path) -> dict[str, str]:
    """{path relative to `root`: SHA-256} of every file under `root`, its manifest aside."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p != root / MANIFEST)
    return {p.relative_to(root).as_posix(): _sha256(p) for p in files}


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_export(source: Path) -> list[ExportedUnit]:
    """The units of the export at `source`, its manifest, files and records checked; a `DataError`
    naming the first file that is missing, damaged, added or malformed."""
    manifest = _read_manifest(source)
    listed, found = manifest["files"], file_checksums(source)
    for path in sorted(set(listed) | set(found)):
        if path not in found:
            raise DataError(f"{source / path} is missing from the export; {AGAIN}")
        if path not in listed:
            raise DataError(f"{source / path} is not part of the export (its manifest lists no such file); "
                            f"remove it, or {AGAIN}")
        if found[path] != listed[path]:
            raise DataError(f"{source / path} does not match its checksum in {MANIFEST} (damaged or edited since "
                            f"the export); {AGAIN}")
    return [ExportedUnit(key, source / UNITS / key, _read_record(source / UNITS / key / UNIT_FILE))
            for key in manifest["units"]]


def _read_manifest(source: Path) -> dict:
    path = source / MANIFEST
    if not path.is_file():
        raise DataError(f"{source} is not an adapterflow export (no {MANIFEST}); pass a folder `adapterflow export` "
                        "wrote")
    manifest = _read_json(path)
    if manifest.get("format") != FORMAT:
        old = " (without checksums)" if manifest.get("format") == 1 else ""
        raise DataError(f"{path} has export format {manifest.get('format')}{old}, this version reads {FORMAT}; "
                        f"{AGAIN}")
    units, files = manifest.get("units"), manifest.get("files")
    if not isinstance(units, list) or not units or not all(isinstance(k, str) and k for k in units):
        raise DataError(f"{path}: 'units' is not a list of unit keys; {AGAIN}")
    if not isinstance(files, dict):
        raise DataError(f"{path}: 'files' is not a map of file checksums; {AGAIN}")
    missing = [key for key in units if f"{UNITS}/{key}/{UNIT_FILE}" not in files]
    if missing:
        raise DataError(f"{path}: unit {missing[0]} has no {UNIT_FILE} in the export; {AGAIN}")
    return manifest


def _read_record(path: Path) -> dict:
    record = _read_json(path)
    for field, kind in UNIT_RECORD.items():
        if not isinstance(record.get(field), kind):
            raise DataError(f"{path}: field '{field}' is missing or not a {kind.__name__}; {AGAIN}")
    absent = [tag for tag in REQUIRED_TAGS if not isinstance(record["tags"].get(tag), str)]
    if absent:
        raise DataError(f"{path}: tag '{absent[0]}' is missing; {AGAIN}")
    return record


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:  # not JSON, or not UTF-8
        raise DataError(f"{path} is not valid JSON ({exc}; cut short?); {AGAIN}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} holds no JSON object; {AGAIN}")
    return data
