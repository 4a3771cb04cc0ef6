"""moto's Step Functions interpreter, parsing each definition once instead of once per execution.

moto (LocalStack's interpreter) parses the definition with ANTLR at the start of every
execution: for ``statemachine/job.asl.json`` 40-110 ms of CPU (measured on the dev machine,
more under load) before the first state runs, on every job, and in one process with the
handlers that CPU is also taken from them. The parse gives a tree of evaluation components
that keep no execution state of their own (an execution's values live in its ``Environment``:
its stack, its heap, keyed by each component's ``heap_key``), so one tree serves every
execution of the same definition, concurrently too. The definition still goes through moto's
own parser, once, and every state still runs in moto's interpreter.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

# A few definitions at most (a stack has one; tests add their variants); bounded all the same.
MAX_PROGRAMS = 32


def _assign_heap_keys(root: Any) -> None:
    """Give every component its lazily made ``heap_key`` now, while one thread holds the tree:
    two executions asking for a key first at the same moment would otherwise each make one."""
    from moto.stepfunctions.parser.asl.component.component import Component
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent

    seen: set[int] = set()
    todo: list[Any] = [root]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, EvalComponent):
            _ = item.heap_key
        if isinstance(item, Component):
            todo.extend(vars(item).values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.values())


@contextmanager
def cache_asl_programs() -> Iterator[dict[str, Any]]:
    """While active, executions of a definition already parsed reuse its evaluation tree.
    Yields the cache (definition text -> program), for tests."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    programs: dict[str, Any] = {}
    lock = threading.Lock()

    def entrypoint(worker: ExecutionWorker) -> Any:
        definition = worker._evaluation_details.state_machine_details.definition
        with lock:
            program = programs.get(definition)
            if program is None:
                program = AmazonStateLanguageParser.parse(definition)[0]
                _assign_heap_keys(program)
                if len(programs) >= MAX_PROGRAMS:
                    programs.pop(next(iter(programs)))
                programs[definition] = program
        return program

    # Only the asynchronous ExecutionWorker: moto's TestState worker parses its own grammar.
    with mock.patch.object(ExecutionWorker, "_get_evaluation_entrypoint", entrypoint):
        yield programs
