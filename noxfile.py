"""Developer sessions: ``nox -s tests lint typecheck`` (the CI set) and ``nox -s bench``."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PACKAGE = "trio_tasks"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest arguments after ``--``)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting."""
    session.install("ruff")
    session.run("ruff", "check", PACKAGE, "tests", "examples", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", PACKAGE, "tests", "examples", "bench", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[test]", "mypy")
    session.run("mypy", "--strict", PACKAGE)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: prints a table and writes bench/results.json."""
    # Installed as users install it (not editable: an editable install adds an import hook to
    # every process's start); the processes run this tree's modules (PYTHONPATH, bytecode
    # compiled once: bench/_servers.py process_env).
    session.install(".[test]")
    session.run("python", "-m", "bench", *session.posargs)


#: The peers of ``nox -s bench_peers``, pinned here (not in pyproject): the versions measured.
BENCH_PEERS = (
    "taskiq==0.13.0",
    "taskiq-redis==1.2.4",
    "dramatiq[redis]==2.2.1",
    "saq==0.26.4",
    "streaq==7.2.0",
    "celery[redis]==5.7.0",
)
BENCH_ARQ = "arq==0.28.0"


@nox.session
def bench_peers(session: nox.Session) -> None:
    """trio-tasks beside its Python peers on one private Redis: prints a table and writes
    bench/peers/results.json (``-- --quick``, ``--rounds N``, ``--only trio-tasks,saq``)."""
    session.install(".", *BENCH_PEERS)  # not editable: see bench()
    # arq 0.28 requires redis-py < 6, Celery 5.7 (kombu) >= 6.4 and taskiq-redis 1.2 >= 8: arq
    # gets a virtualenv of its own inside this session's (the harness runs its client and
    # worker with that interpreter).
    arq = Path(session.virtualenv.location) / "arq-venv"
    if not (arq / "bin" / "python").exists():
        session.run("python", "-m", "venv", str(arq))
    session.run(str(arq / "bin" / "python"), "-m", "pip", "install", "-q", BENCH_ARQ, external=True)
    env = {"BENCH_PEERS_ARQ_PYTHON": str(arq / "bin" / "python")}
    session.run("python", "-m", "bench.peers", *session.posargs, env=env)
