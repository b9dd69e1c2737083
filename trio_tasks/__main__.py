"""``python -m trio_tasks``: the ``trio-tasks`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
