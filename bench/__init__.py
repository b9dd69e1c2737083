"""The trio-tasks benchmark suite: ``nox -s bench`` or ``python -m bench``."""
