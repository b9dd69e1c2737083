"""trio-tasks beside its Python peers on one private Redis (``nox -s bench_peers``).

The harness (:mod:`bench.peers._harness`) imports no peer: it runs every system's producer,
observer and worker as subprocesses (``python -m bench.peers._client SYSTEM ...`` and the
system's own worker command), so a peer that is not installed costs nothing until it is asked
for. Each system's code is a module of its own (``_trio_tasks.py``, ``_saq.py``, …) with the small
interface described in :mod:`bench.peers._client`.
"""
