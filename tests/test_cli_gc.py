"""The garbage collector of the processes ``trio-tasks serve`` and ``worker`` own: once the
node has started, the objects of start-up are frozen and full collections run a tenth as often
(``cli._run_frozen``). The program's own GC state is restored after each test."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest
import trio
import trio.lowlevel

from trio_tasks.cli import _run_frozen


@pytest.fixture
def _gc_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("_gc_restored")
def test_a_node_freezes_its_start_up_and_collects_everything_less_often() -> None:
    seen: dict[str, tuple[int, tuple[int, int, int]]] = {}

    async def node(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        seen["before"] = (gc.get_freeze_count(), gc.get_threshold())
        task_status.started()
        # The node runs on; the collector is set once it has started.
        with trio.fail_after(5):
            while not gc.get_freeze_count():
                await trio.lowlevel.checkpoint()
        seen["after"] = (gc.get_freeze_count(), gc.get_threshold())

    young, middle, full = gc.get_threshold()
    trio.run(_run_frozen, node)
    assert seen["before"] == (0, (young, middle, full))
    frozen, thresholds = seen["after"]
    assert frozen > 1000  # the modules, the functions, trio's and the node's objects
    if sys.version_info < (3, 14):
        assert thresholds == (young, middle, 100)
    else:  # an incremental collector: no third threshold to set
        assert thresholds == (young, middle, full)
