"""CPU-bound work in a process that a timeout really stops.

Run it with ``python examples/isolated.py``. ``count_primes`` is a plain ``def`` handler marked
``isolate="process"``: it runs in a worker process of the processor's pool, so it neither blocks
the event loop nor outlives its timeout. The first job finishes; the second asks for far more
work than its 1 s timeout allows, and its process is killed when the time is up.
"""

from __future__ import annotations

import trio

import trio_tasks

tasks = trio_tasks.TaskRegistry()


@tasks.task("count_primes", isolate="process", timeout="1s", retries=0)
def count_primes(ctx: trio_tasks.ProcessContext) -> int:
    """Count the primes below ``payload["below"]``, the slow way (pure CPU)."""
    below = int(ctx.payload["below"])
    return sum(1 for n in range(2, below) if all(n % d for d in range(2, int(n**0.5) + 1)))


async def main() -> None:
    async with trio_tasks.open_processor(tasks, workers=2) as processor:
        small = await processor.submit("count_primes", {"below": 10_000})
        huge = await processor.submit("count_primes", {"below": 10**9})
        for job in (await processor.wait(small.id), await processor.wait(huge.id)):
            outcome = job.result if job.error is None else job.error.message
            print(f"{job.payload['below']}: {job.status} {outcome}")


if __name__ == "__main__":
    trio.run(main)
