"""A wheel of the running trademl, logged with each pyfunc model so that its environment can
be rebuilt from the model alone (no index holds this code at this state).

The wheel holds the package's files as they are loaded now and the installed distribution's
metadata; its version carries a local label of the files' digest (``0.1.0+g3f2a...``), so one
state of the code gives one wheel, byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import zipfile
from functools import cache
from pathlib import Path

import trademl

_WHEEL = "Wheel-Version: 1.0\nGenerator: trademl.tracking.wheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
# Zip entries dated like reproducible builds do (zip cannot store earlier than 1980).
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _package_files(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix not in (".pyc", ".pyo")
    )


@cache
def project_wheel() -> tuple[str, bytes]:
    """The file name and the bytes of this process's trademl as a wheel (built once).

    Returns
    -------
    tuple of (str, bytes)
        ``trademl-{version}+g{digest}-py3-none-any.whl`` and its content.
    """
    package = Path(trademl.__file__).parent
    files = _package_files(package)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    dist = importlib.metadata.distribution("trademl")
    version = f"{dist.version.split('+')[0]}+g{digest.hexdigest()[:12]}"
    info = f"trademl-{version}.dist-info"
    metadata = "".join(
        f"Version: {version}\n" if line.startswith("Version: ") else line
        for line in (dist.read_text("METADATA") or "").splitlines(keepends=True)
    )
    entries: list[tuple[str, bytes]] = [
        (f"trademl/{path.relative_to(package).as_posix()}", path.read_bytes()) for path in files
    ]
    entries += [(f"{info}/METADATA", metadata.encode()), (f"{info}/WHEEL", _WHEEL.encode())]
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        entries.append((f"{info}/entry_points.txt", entry_points.encode()))
    record = [f"{name},sha256={_b64_digest(data)},{len(data)}" for name, data in entries]
    entries.append((f"{info}/RECORD", ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in entries:
            entry = zipfile.ZipInfo(name, date_time=_EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            wheel.writestr(entry, data)
    return f"trademl-{version}-py3-none-any.whl", buffer.getvalue()


def write_project_wheel(folder: Path) -> Path:
    """Write :func:`project_wheel` into ``folder``; the path of the file written."""
    name, data = project_wheel()
    path = folder / name
    path.write_bytes(data)
    return path


def _b64_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
