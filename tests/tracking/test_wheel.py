"""The wheel logged with every pyfunc: the package's files as loaded, the distribution's
metadata under a version labelled with their digest, RECORD hashes that check, same bytes for
the same code."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

import trademl
from trademl.tracking.wheel import project_wheel


def test_wheel_is_complete_and_reproducible() -> None:
    name, data = project_wheel.__wrapped__()
    again = project_wheel.__wrapped__()
    assert again == (name, data)  # one state of the code, one wheel, byte for byte
    version = name.removeprefix("trademl-").removesuffix("-py3-none-any.whl")
    assert version.startswith(f"{trademl.__version__}+g") and len(version.split("+g")[1]) == 12

    wheel = zipfile.ZipFile(io.BytesIO(data))
    names = set(wheel.namelist())
    package = Path(trademl.__file__).parent
    assert "trademl/features/presets/standard.yaml" in names  # package data too
    assert "trademl/tracking/wheel.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    info = f"trademl-{version}.dist-info"
    metadata = wheel.read(f"{info}/METADATA").decode()
    assert f"\nVersion: {version}\n" in metadata and "Requires-Dist: pandas" in metadata
    assert "trademl = trademl.cli.app:main" in wheel.read(f"{info}/entry_points.txt").decode()
    assert wheel.read("trademl/workflow.py") == (package / "workflow.py").read_bytes()

    record = wheel.read(f"{info}/RECORD").decode().splitlines()
    assert record[-1] == f"{info}/RECORD,,"
    for line in record[:-1]:
        path, digest, size = line.rsplit(",", 2)
        content = wheel.read(path)
        expected = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
        assert digest == f"sha256={expected.decode()}" and int(size) == len(content)
    assert len(record) - 1 == len(names) - 1  # every file but RECORD itself is recorded
