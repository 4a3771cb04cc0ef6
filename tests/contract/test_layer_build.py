"""The layer as layers/comfyroute/Makefile really builds it (for this machine's platform), through
benchmarks/cold_start.py end to end on one handler: what the layer holds, that its bytecode is
hash-based, and that the benchmark prints its tables without writing a file into the layout.

Needs the package index (pip downloads the layer's wheels) and Python 3.12, like `sam build`."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(sys.version_info[:2] != (3, 12), reason="the layer is built for Python 3.12"),
]

# What the python3.12 Lambda runtime already ships: never in the layer.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3"}
ROW = re.compile(r"^(?P<name>\S+)\s+(?P<ms>\d+\.\d)\s+(?P<ratio>\d+\.\d\d)x\b.*?(?P<modules>\d+)$", re.M)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    work = tmp_path_factory.mktemp("cold-start")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "cold_start.py"),
            "--runs",
            "1",
            "--only",
            "authorizer",
            "--work",
            str(work),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, work / "layer" / "python"


def test_layer_holds_the_library_and_its_dependencies_but_not_the_runtime_sdk_or_the_tools(
    bench: tuple[str, Path],
) -> None:
    _, layer = bench
    top = {p.name for p in layer.iterdir()}
    assert {"comfyroute", "pydantic", "pydantic_core", "aws_lambda_powertools", "requests", "websockets"} <= top
    assert not top & RUNTIME_PROVIDED, sorted(top & RUNTIME_PROVIDED)
    assert not [n for n in top if n.startswith(("boto3-", "botocore-", "urllib3-"))]
    assert "comfyroute_tools" not in top
    assert "bin" not in top
    library = layer / "comfyroute"
    sources = {p.relative_to(library) for p in library.rglob("*.py")}
    expected = {
        p.relative_to(ROOT / "layers" / "comfyroute" / "comfyroute")
        for p in (ROOT / "layers" / "comfyroute" / "comfyroute").rglob("*.py")
    }
    assert sources == expected
    assert not [p for p in library.rglob("*") if p.suffix in {".html", ".js", ".css"}]


def test_every_module_in_the_layer_has_unchecked_hash_bytecode(bench: tuple[str, Path]) -> None:
    _, layer = bench
    tag = sys.implementation.cache_tag
    sources = list(layer.rglob("*.py"))
    assert len(sources) > 300
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        assert pyc.is_file(), pyc
    for source in sources[:: max(1, len(sources) // 50)]:
        header = (source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc").read_bytes()[:8]
        (flags,) = struct.unpack("<I", header[4:8])
        assert flags == 0b01, (source, flags)  # hash-based, source never checked


def test_benchmark_prints_both_tables_with_the_handler_against_boto3(bench: tuple[str, Path]) -> None:
    out, _ = bench
    compiled, _, source_only = out.partition("for contrast")
    assert source_only, out
    for part in (compiled, source_only):
        rows = {m["name"]: m for m in ROW.finditer(part)}
        assert set(rows) == {"boto3", "floor", "authorizer"}, part
        assert rows["boto3"]["ratio"] == "1.00"
        assert int(rows["authorizer"]["modules"]) > int(rows["boto3"]["modules"]) > 50
        # The floor imports pydantic and Powertools beside boto3, and has no target.
        assert int(rows["floor"]["modules"]) > int(rows["boto3"]["modules"])
    assert re.search(r"^authorizer .* 1\.25x\s+(ok|OVER)\s", compiled, re.M), compiled
    assert not re.search(r"^floor .*x\s+(ok|OVER)\s", compiled, re.M), compiled
