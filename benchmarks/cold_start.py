"""Cold import of every handler, laid out as Lambda loads it, against a bare ``import boto3``.

Each measurement is a fresh interpreter whose ``sys.path`` starts as Lambda's does:

    <function dir>        functions/<name>/ as `sam build` copies it (no .pyc: SAM compiles nothing)
    <layer>/python        the layer as layers/comfyroute/Makefile builds it (hash-based .pyc)
    <runtime>             boto3, botocore and their dependencies as the python3.12 runtime ships
                          them (compiled), which the layer leaves out

then the standard library, and no site-packages (``-S``). The child times ``import app`` (or
``import boto3``) and counts the modules it loaded; interpreter start-up is not counted. The
ratio uses the import's CPU time: on an idle machine with the files in the page cache an import
is CPU-bound (wall time = CPU time), and on a shared one CPU time is what other processes
disturb least. Wall time is shown beside it.

Lambda mounts the function and the layer read-only, so Python can never cache bytecode there.
Root ignores permission bits, so a ``chmod`` would not emulate that; instead every child runs with
``-B`` and PYTHONDONTWRITEBYTECODE=1 (the import system's only writes are .pyc files), and the
script checks afterwards that not one file appeared in the layout. A second table repeats the
runs with the layer stripped of its .pyc files (what SAM's python3.12 builder made), for contrast.

Runs are interleaved (every target once per round, in a shuffled order), so machine noise hits
each target alike; the table shows medians. Not a test: numbers for the note, no timed asserts.
The ``floor`` row (no target) is what any handler that validates with pydantic and logs with
Powertools pays before a module of its own: the ratio below which no route's imports can go.
The OS page cache is warm after the first round, which Lambda's first start may not be.

On a machine other processes share, CPU times still move by a tenth or more between runs.
``--instructions`` counts instead, under valgrind's callgrind, the user-space instructions each
import executes (minus those of an interpreter that imports nothing): the same number on every
run, whatever else the machine does, so one run per target is enough. It leaves out system calls
and cache misses, which the CPU time includes; it is the measure to compare changes by, the CPU
table the one to quote.

    .venv/bin/python benchmarks/cold_start.py                  # builds the layer for this machine
    .venv/bin/python benchmarks/cold_start.py --runs 5 --only authorizer connect
    .venv/bin/python benchmarks/cold_start.py --layer .aws-sam/build/ComfyrouteLayer   # arm64 host
    .venv/bin/python benchmarks/cold_start.py --instructions   # needs valgrind; ~15 s per target

Without ``--layer`` it runs the layer Makefile with LAYER_PLATFORM set to this machine's
manylinux platform (arm64 wheels don't import on x86_64) and LAYER_PYTHON to this interpreter.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.metadata
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
LAYER_MAKEFILE = ROOT / "layers" / "comfyroute" / "Makefile"
LAMBDA_PYTHON = (3, 12)
# What the python3.12 runtime ships beside the interpreter (the layer Makefile's RUNTIME_PROVIDED).
RUNTIME_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
# Issue 8's targets, as multiples of a bare `import boto3`.
TARGET = 1.5
QUICK_TARGET = 1.25
QUICK_HANDLERS = frozenset({"authorizer", "connect", "disconnect"})
BASELINE = "boto3"
# For contrast, no target: what any handler that validates with pydantic and logs with Powertools
# pays before a module of its own (boto3, one pydantic model, Powertools' Logger and Metrics as
# awslambda/instrument.py makes them). A route's ratio can come down to this and no further.
FLOOR = "floor"
FLOOR_MODULE = """import boto3
from aws_lambda_powertools import Logger, Metrics
from pydantic import BaseModel, ConfigDict, Field


class Floor(BaseModel):
    model_config = ConfigDict(defer_build=True)
    name: str = Field(default="")


logger, metrics = Logger(), Metrics()
"""
REFERENCES = (BASELINE, FLOOR)


def module_of(target: str) -> str:
    return {BASELINE: "boto3", FLOOR: "floor"}.get(target, "app")


# Runs in the child: nothing imported before the clock starts but what the interpreter needs.
CHILD = """
import sys, time
task, layer, runtime, module = sys.argv[1:5]
sys.path[:0] = [task, layer, runtime]
before = len(sys.modules)
cpu, wall = time.process_time(), time.perf_counter()
if module:  # empty: the interpreter alone, what --instructions subtracts
    __import__(module)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
sys.stdout.write("%.6f %.6f %d\\n" % (cpu, wall, len(sys.modules) - before))
"""


@dataclass
class Samples:
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    modules: int = 0

    @property
    def cpu_ms(self) -> float:
        return statistics.median(self.cpu) * 1000

    @property
    def wall_ms(self) -> float:
        return statistics.median(self.wall) * 1000


@dataclass(frozen=True)
class Layout:
    """The directories of one measurement setup (one table)."""

    name: str
    layer: Path
    runtime: Path
    tasks: dict[str, Path]


def lambda_env(function: str, task: Path) -> dict[str, str]:
    """What the Lambda runtime sets that changes import-time behaviour (Powertools' Tracer only
    patches botocore/requests inside Lambda, found through LAMBDA_TASK_ROOT), and nothing of
    this machine's environment: no PYTHONPATH, no real credentials."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(task),
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_NAME": f"comfyroute-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "_HANDLER": "app.handler",
        "POWERTOOLS_SERVICE_NAME": "comfyroute",
        "POWERTOOLS_METRICS_NAMESPACE": "comfyroute",
    }


def measure(python: str, layout: Layout, target: str) -> tuple[float, float, int]:
    """One fresh interpreter: CPU and wall seconds for the import, and how many modules it loaded."""
    done = _child(python, layout, target, module_of(target))
    cpu, wall, modules = done.stdout.split()
    return float(cpu), float(wall), int(modules)


# callgrind counts every instruction the process executes; nothing is written but its report.
CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
NOTHING = ""


def count_instructions(python: str, layout: Layout, target: str, module: str | None = None) -> tuple[int, int]:
    """One fresh interpreter under callgrind: the instructions it executed, and the modules the
    import loaded."""
    module = module if module is not None else module_of(target)
    done = _child(python, layout, target, module, under=CALLGRIND)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"{target}: no instruction count from valgrind\n{done.stderr.strip()[-2000:]}")
    return int(found.group(1)), int(done.stdout.split()[2])


def _child(
    python: str, layout: Layout, target: str, module: str, *, under: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    task = layout.tasks[target]
    done = subprocess.run(
        [*under, python, "-B", "-S", "-s", "-c", CHILD, str(task), str(layout.layer), str(layout.runtime), module],
        env=lambda_env(target, task),
        cwd=task,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise SystemExit(f"{target} ({layout.name}): import failed\n{done.stderr.strip()}")
    return done


# ------------------------------------------------------------------------------ the layout


def build_layer(python: str, artifacts: Path) -> Path:
    """The layer for this machine, by the same Makefile `sam build` runs."""
    machine = platform.machine()
    arch = {"arm64": "aarch64", "amd64": "x86_64"}.get(machine.lower(), machine)
    command = [
        "make",
        "--no-print-directory",
        "-f",
        str(LAYER_MAKEFILE),
        "build-ComfyrouteLayer",
        f"ARTIFACTS_DIR={artifacts}",
        f"LAYER_PLATFORM=manylinux2014_{arch}",
        f"LAYER_PYTHON={python}",
    ]
    print(f"building the layer for {arch}: {' '.join(command)}", file=sys.stderr)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"layer build failed:\n{done.stdout}\n{done.stderr}")
    return artifacts / "python"


def layer_python_dir(given: Path) -> Path:
    path = given / "python" if (given / "python").is_dir() else given
    if not (path / "comfyroute").is_dir():
        raise SystemExit(f"{given}: no comfyroute package (expected a built layer or its python/ dir)")
    return path


def build_runtime(into: Path) -> Path:
    """boto3 and its dependencies as the Lambda runtime has them: copied from this environment's
    installed distributions (same versions as the tests use, no download) and compiled the way
    pip compiles (timestamp-based .pyc)."""
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed here; run from the project venv (make venv)") from None
        for file in dist.files or ():
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # console scripts outside site-packages, stale caches
            source = Path(str(dist.locate_file(file)))
            target = into / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    compileall.compile_dir(into, quiet=1, workers=0)
    return into


def copy_tree_without_bytecode(source: Path, into: Path) -> Path:
    shutil.rmtree(into, ignore_errors=True)
    shutil.copytree(source, into, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return into


def function_names(only: Sequence[str]) -> list[str]:
    names = sorted(p.name for p in FUNCTIONS.iterdir() if (p / "app.py").is_file())
    unknown = set(only) - set(names)
    if unknown:
        raise SystemExit(f"no such function: {', '.join(sorted(unknown))} (have {', '.join(names)})")
    return [n for n in names if n in only] if only else names


def snapshot(dirs: Iterable[Path]) -> set[Path]:
    return {p for d in dirs for p in d.rglob("*")}


# ------------------------------------------------------------------------------ the tables


def table(title: str, samples: dict[str, Samples], *, targets: bool) -> str:
    base = samples[BASELINE].cpu_ms
    header = f"{'handler':<14} {'cpu ms':>10} {'x boto3':>8}"
    header += f" {'target':>7} {'':>4}" if targets else ""
    header += f" {'wall ms':>8} {'modules':>8}"
    lines = [title, header, "-" * len(header)]
    for name, s in samples.items():
        ratio = s.cpu_ms / base
        row = f"{name:<14} {s.cpu_ms:>10.1f} {ratio:>7.2f}x"
        if targets:
            if name in REFERENCES:
                row += f" {'':>7} {'':>4}"
            else:
                goal = QUICK_TARGET if name in QUICK_HANDLERS else TARGET
                row += f" {goal:>6.2f}x {'ok' if ratio <= goal else 'OVER':>4}"
        row += f" {s.wall_ms:>8.1f} {s.modules:>8}"
        lines.append(row)
    return "\n".join(lines)


def instruction_table(counts: dict[str, tuple[int, int]]) -> str:
    base = counts[BASELINE][0]
    header = f"{'handler':<14} {'M instr':>10} {'x boto3':>8} {'target':>7} {'':>4} {'modules':>8}"
    lines = ["with the layer as built (hash-based .pyc), instructions executed by the import:", header]
    lines.append("-" * len(header))
    for name, (count, modules) in counts.items():
        ratio = count / base
        row = f"{name:<14} {count / 1e6:>10.0f} {ratio:>7.2f}x"
        if name in REFERENCES:
            row += f" {'':>7} {'':>4}"
        else:
            goal = QUICK_TARGET if name in QUICK_HANDLERS else TARGET
            row += f" {goal:>6.2f}x {'ok' if ratio <= goal else 'OVER':>4}"
        lines.append(row + f" {modules:>8}")
    return "\n".join(lines)


def count_all(layout: Layout, names: Sequence[str], python: str) -> dict[str, tuple[int, int]]:
    """Each target's import in instructions, the interpreter's own start subtracted."""
    if shutil.which(CALLGRIND[0]) is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    nothing, _ = count_instructions(python, layout, BASELINE, NOTHING)
    counts = {}
    for target in [*REFERENCES, *names]:
        count, modules = count_instructions(python, layout, target)
        counts[target] = (count - nothing, modules)
        print(f"{target} counted", file=sys.stderr)
    return counts


def run(layouts: Sequence[Layout], names: Sequence[str], runs: int, python: str, seed: int) -> list[dict[str, Samples]]:
    targets = [*REFERENCES, *names]
    results = [{t: Samples() for t in targets} for _ in layouts]
    rng = random.Random(seed)
    for round_ in range(runs):
        order = [(i, t) for i in range(len(layouts)) for t in targets]
        rng.shuffle(order)
        for i, target in order:
            cpu, wall, modules = measure(python, layouts[i], target)
            results[i][target].cpu.append(cpu)
            results[i][target].wall.append(wall)
            results[i][target].modules = modules
        print(f"round {round_ + 1}/{runs} done", file=sys.stderr)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--layer", type=Path, help="a built layer (or its python/ dir); default: build one")
    parser.add_argument("--runtime", type=Path, help="a directory holding boto3 and botocore; default: make one")
    parser.add_argument("--runs", type=int, default=9, help="rounds; the table shows medians (default 9)")
    parser.add_argument("--only", nargs="*", default=[], metavar="FUNCTION", help="these functions only")
    parser.add_argument("--work", type=Path, help="keep the layout here (default: a temporary directory)")
    parser.add_argument("--no-contrast", action="store_true", help="skip the table without bytecode")
    parser.add_argument("--seed", type=int, default=8, help="for the shuffled order of each round")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under valgrind instead of timing (one run)"
    )
    args = parser.parse_args(argv)

    if sys.version_info[:2] != LAMBDA_PYTHON:
        raise SystemExit(
            f"run this with Python {'.'.join(map(str, LAMBDA_PYTHON))}: the layer's bytecode and wheels are for it"
        )
    python = sys.executable
    names = function_names(args.only)

    work = args.work or Path(tempfile.mkdtemp(prefix="cold-start-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        layer = layer_python_dir(args.layer) if args.layer else build_layer(python, work / "layer")
        runtime = args.runtime or work / "runtime"
        if args.runtime and not (runtime / "boto3").is_dir():
            raise SystemExit(f"{runtime}: no boto3 there")
        # Once per --work directory; an interrupted build (no marker) is made again, or its
        # uncompiled modules would count as import time.
        built = work / "runtime.built"
        if not args.runtime and not built.exists():
            shutil.rmtree(runtime, ignore_errors=True)
            build_runtime(runtime)
            built.touch()
        # Function dirs as sam build copies them; the baseline gets an empty one of its own.
        tasks = {n: copy_tree_without_bytecode(FUNCTIONS / n, work / "task" / n) for n in names}
        tasks[BASELINE] = work / "task" / "_boto3"
        tasks[BASELINE].mkdir(parents=True, exist_ok=True)
        tasks[FLOOR] = work / "task" / "_floor"
        tasks[FLOOR].mkdir(parents=True, exist_ok=True)
        (tasks[FLOOR] / "floor.py").write_text(FLOOR_MODULE, encoding="utf-8")

        layouts = [Layout("compiled layer", layer, runtime, tasks)]
        if args.instructions:
            before = snapshot([layer, runtime, *tasks.values()])
            counts = count_all(layouts[0], names, python)
            if snapshot([layer, runtime, *tasks.values()]) - before:
                raise SystemExit("the runs wrote files into the layout: not read-only")
            print(
                f"cold import, instructions executed (valgrind callgrind, user space, one run each: they "
                f"do not vary); Python {platform.python_version()} on {platform.machine()}; no bytecode written (-B)"
            )
            print(f"layer {layer}\nruntime {runtime}\n")
            print(instruction_table(counts))
            return 0
        if not args.no_contrast:
            source_only = copy_tree_without_bytecode(layer, work / "layer-without-bytecode")
            layouts.append(Layout("layer without .pyc", source_only, runtime, tasks))

        watched = [layer, runtime, *tasks.values(), *(lo.layer for lo in layouts)]
        before = snapshot(watched)
        results = run(layouts, names, args.runs, python, args.seed)
        written = snapshot(watched) - before
        if written:
            raise SystemExit(f"the runs wrote {len(written)} files (e.g. {sorted(written)[0]}): not read-only")

        print(
            f"cold import, median of {args.runs} fresh interpreters each; Python {platform.python_version()} "
            f"on {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
            "no bytecode written (-B)\n"
            "cpu ms and x boto3: the import's CPU time (user + system), which other processes on a shared "
            "machine disturb far less than its wall time (wall ms)"
        )
        print(f"layer {layer}\nruntime {runtime}\n")
        print(table("with the layer as built (hash-based .pyc):", results[0], targets=True))
        if len(results) > 1:
            print()
            print(
                table("for contrast, the same layer without .pyc (every import compiles):", results[1], targets=False)
            )
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
