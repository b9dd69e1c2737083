"""The ``trio-tasks`` command: run a node (``serve``, ``worker``) or talk to one (``submit``,
``status``, ``stats``, ``schedules``).

Exit status: 0 on success and after a signal-initiated shutdown; 1 when a client command gets
an error answer, a waited-for job does not complete, or a node fails at run time; 2 for bad
usage or configuration (one line on stderr naming the flag or variable).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

import attrs
import trio

from ._cli_client import DEFAULT_URL as DEFAULT_URL
from ._cli_client import ClientError as _ClientError
from ._cli_client import UsageError as _UsageError
from ._cli_client import add_url as _add_url
from ._cli_client import schedules as _schedules
from ._cli_client import stats as _stats
from ._cli_client import status as _status
from ._cli_client import submit as _submit
from ._cli_dead_letter import add_commands as _add_dead_letter_commands
from ._config import DURATION_FIELDS, SETTINGS, Config, Setting, shown_value, split_list
from ._demo import demo_registry
from ._durations import format_duration
from ._errors import InvalidValue
from ._log import node_logger
from ._logging import configure_logging
from ._node import run_node
from ._precise_clock import PreciseClock
from ._processor import Processor
from ._registry import TaskRegistry
from ._schedules import load_schedules_file
from ._secrets import add_secrets, redact, redact_url, url_secrets

_HTTP_ONLY = frozenset(
    {
        "server_host",
        "server_port",
        "max_body_size",
        "api_token",
        "api_read_token",
        "metrics_public",
        "cors_origins",
        "allowed_hosts",
        "certfile",
        "keyfile",
    }
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trio-tasks`` command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
    except _UsageError as exc:
        print(f"trio-tasks: error: {exc}", file=sys.stderr)
        return 2
    except _ClientError as exc:
        print(f"trio-tasks: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


# -- the parser ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-tasks",
        description="A task processing system on Trio: priorities, timeouts, retries, HTTP API.",
    )
    parser.add_argument("--version", action=_ShowVersion, help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the HTTP API and the workers",
        description="Run the HTTP API and the workers in one process. Every flag can also be "
        "given as the environment variable shown; flags win.",
    )
    _add_settings(serve, http=True)
    serve.set_defaults(run=partial(_run_node, http=True))

    worker = commands.add_parser(
        "worker",
        help="run workers only (no HTTP), for a shared broker",
        description="Run workers without the HTTP API; useful with BROKER_URL=redis://... so "
        "that other nodes accept the jobs. Every flag can also be given as the environment "
        "variable shown; flags win.",
    )
    _add_settings(worker, http=False)
    worker.set_defaults(run=partial(_run_node, http=False))

    submit = commands.add_parser("submit", help="submit a job to a running server")
    submit.add_argument("type", help="job type, e.g. email")
    submit.add_argument("--priority", help="low, normal, high or urgent (default normal)")
    submit.add_argument("--payload", help='the job\'s payload, a JSON object: \'{"to": "x"}\'')
    submit.add_argument("--timeout", help="the job's timeout, e.g. 30s")
    submit.add_argument("--retries", help="retries after the first attempt")
    submit.add_argument("--delay", help="run no sooner than this from now, e.g. 10s")
    submit.add_argument("--job-id", help="your own id: submitting it again returns that job")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="follow the job (state and progress on stderr) until it finishes, then print "
        "it; exit 1 unless it completed",
    )
    _add_url(submit)
    submit.set_defaults(run=_submit)

    status = commands.add_parser("status", help="show one job of a running server")
    status.add_argument("job_id", metavar="JOB_ID")
    status.add_argument(
        "--follow",
        action="store_true",
        help="follow the job (state and progress on stderr) until it finishes, then print "
        "it; exit 1 unless it completed",
    )
    _add_url(status)
    status.set_defaults(run=_status)

    stats = commands.add_parser("stats", help="show the statistics of a running server")
    _add_url(stats)
    stats.set_defaults(run=_stats)

    schedules = commands.add_parser("schedules", help="list the periodic jobs of a running server")
    _add_url(schedules)
    schedules.set_defaults(run=_schedules)

    _add_dead_letter_commands(commands)
    return parser


def _add_settings(parser: argparse.ArgumentParser, *, http: bool) -> None:
    defaults = Config()
    for setting in SETTINGS:
        if not http and setting.field in _HTTP_ONLY:
            continue
        default = getattr(defaults, setting.field)
        if setting.field in DURATION_FIELDS:
            default = format_duration(default)
        elif setting.field == "tasks_app":
            default = "the built-in demo job types"
        elif default is None:
            default = "unset"
        parser.add_argument(
            setting.flag,
            dest=setting.field,
            metavar=setting.env,
            default=None,
            help=f"{setting.help} (default: {default})",
        )


class _ShowVersion(argparse.Action):
    """``--version``, looked up only when asked for (importlib.metadata is slow to import)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        print(f"trio-tasks {_version()}")
        parser.exit()


def _version() -> str:
    try:
        import importlib.metadata  # only for --version: 9 ms of a worker's start-up

        return importlib.metadata.version("trio-tasks")
    except ModuleNotFoundError:  # run from a source tree
        from . import __version__

        return __version__


# -- serve and worker ------------------------------------------------------------------------


def _run_node(args: argparse.Namespace, *, http: bool) -> int:
    flags = {s.field: getattr(args, s.field, None) for s in SETTINGS}
    config = load_config(os.environ, flags)
    # Whatever prints them from now on (a log line, an error quoting the URL) shows ***.
    add_secrets(*url_secrets(config.broker_url), *split_list(config.api_token))
    add_secrets(*split_list(config.api_read_token))
    registry = load_registry(config.tasks_app, "--app" if flags["tasks_app"] else "TASKS_APP")
    if config.schedules_file:
        name = "--schedules-file" if flags["schedules_file"] else "SCHEDULES_FILE"
        add_schedules_file(registry, config.schedules_file, name)
    if http and config.certfile is not None:
        _check_tls(config, "--certfile" if flags["certfile"] else "TLS_CERTFILE")
    configure_logging(config.log_level, config.log_format)
    log = node_logger()
    try:
        processor = Processor(registry, config)
    except InvalidValue as exc:
        name = "--broker" if flags["broker_url"] else "BROKER_URL"
        # The start-up log line hides a password in the URL; so does this one.
        raise _UsageError(f"{name}={redact_url(config.broker_url)!r}: {redact(str(exc))}") from None
    if not http and config.broker_url.startswith(("memory://", "sqlite://")):
        scheme = config.broker_url.partition("://")[0]
        log.warning(
            f"worker with the {scheme}:// broker: no other process can submit jobs to it",
            hint="set BROKER_URL=redis://host:port/0 on this worker and on the API nodes",
        )
    try:
        # Handlers that sleep or time out on short scales would otherwise wake up to a
        # millisecond late each time (see PreciseClock): 10 ms jobs ran at ~80% of their rate.
        trio.run(_run_frozen, partial(run_node, processor, http=http), clock=PreciseClock())
    except BaseException as exc:
        return _crashed(log, exc, config)
    return 0


async def _run_frozen(run: Callable[..., Awaitable[Any]]) -> None:
    """``run`` (:func:`run_node`), with the garbage collector set for a long-running node once
    it has started.

    A busy node keeps thousands of objects alive a while (the jobs it holds), so Python's
    garbage collector ran full collections several times a second, and each one looked at
    every object of start-up too (the modules, the app: tens of thousands) although they never
    become garbage. ``gc.freeze`` sets those aside, and full collections run a tenth as often
    (young ones as before: short-lived garbage goes as soon): a no-op job costs the node ~10%
    less. Only for the processes this command owns: a program that embeds the node decides
    that for itself.
    """
    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        # No gc.collect() first: it would hold the loop 5 to 15 ms just as the first jobs come, to
        # spare the few kilobytes of start-up garbage that freezing keeps.
        gc.freeze()
        if sys.version_info < (3, 14):
            # From 3.14 the collector is incremental and takes no third threshold.
            young, middle, _ = gc.get_threshold()
            gc.set_threshold(young, middle, _FULL_COLLECTION_EVERY)


#: Collections of the middle generation between two full ones (Python's default: 10).
_FULL_COLLECTION_EVERY = 100


def _check_tls(config: Config, name: str) -> None:
    # Loaded once here so that a missing or mismatched file is one line and exit status 2, not
    # an error once the server starts.
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            config.certfile or "", config.keyfile
        )
    except (OSError, ssl.SSLError) as exc:
        raise _UsageError(
            f"{name}={config.certfile!r}: cannot load the certificate and key "
            f"({config.keyfile!r}): {exc}"
        ) from None


def _crashed(log: Any, exc: BaseException, config: Config) -> int:
    """Turn what stopped a node into one log line and an exit status.

    Handlers cannot get here (their exceptions fail their own job): this is a bug in
    trio-tasks, a broken environment, or a listen address in use. One JSON line, exit status 1,
    so that a supervisor restarts the node; a Ctrl-C during start-up is a clean stop.
    """
    leaf = _only_leaf(exc)
    if isinstance(leaf, InvalidValue):
        # A setting found wrong once running (Redis refused the password): as at start-up,
        # one line on stderr and exit status 2; what the node logged before stays.
        print(
            f"trio-tasks: error: BROKER_URL={redact_url(config.broker_url)!r}: {redact(str(leaf))}",
            file=sys.stderr,
        )
        return 2
    if isinstance(leaf, KeyboardInterrupt):
        # SIGINT landed before the signal handler was installed (start-up): a clean stop.
        log.info("trio-tasks stopped", reason="interrupted during start-up")
        return 0
    if isinstance(leaf, OSError) and not isinstance(leaf, ConnectionError):
        # Cannot listen (address in use, permission): a message, no traceback.
        log.error(
            "trio-tasks cannot start",
            error=f"{type(leaf).__name__}: {leaf}",
            address=f"{config.server_host}:{config.server_port}",
        )
        return 1
    # The traceback travels inside the JSON line (exc_info), never as raw lines on the stream.
    log.critical("trio-tasks crashed", error=f"{type(leaf).__name__}: {leaf}", exc_info=exc)
    return 1


def _only_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def load_config(environ: Mapping[str, str], flags: Mapping[str, str | None]) -> Config:
    """Return the :class:`Config` from ``environ`` and raw flag values by field (flags win).

    A variable overridden by a flag is not read at all, so a flag can stand in for a bad one.

    Raises:
        _UsageError: one line naming the flag or the variable, the value and what is expected.
    """
    overrides: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = flags.get(setting.field)
        if raw is None:
            continue
        try:
            overrides[setting.field] = setting.parse(raw)
        except InvalidValue as exc:
            raise _UsageError(f"{setting.flag}={raw!r}: {_strip_name(exc)}") from None
    shadowed = {s.env for s in SETTINGS if s.field in overrides}
    try:
        base = Config.from_env({k: v for k, v in environ.items() if k not in shadowed})
    except InvalidValue as exc:
        raise _UsageError(str(exc)) from None
    try:
        return attrs.evolve(base, **overrides)
    except InvalidValue as exc:
        failed = _setting(getattr(exc, "field", None))
        if failed is None:
            raise _UsageError(str(exc)) from None
        if failed.field in overrides:
            name, raw = failed.flag, flags[failed.field]
        else:
            name, raw = failed.env, environ.get(failed.env)
        raise _UsageError(f"{name}={shown_value(failed.field, raw)}: {exc}") from None


def _setting(field: str | None) -> Setting | None:
    return next((s for s in SETTINGS if s.field == field), None)


def _strip_name(exc: Exception) -> str:
    # Parsers prefix messages with a generic name ("duration: ..."); the flag replaces it.
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith(("value: ", "duration: ")) else text


def add_schedules_file(registry: TaskRegistry, path: str, source: str) -> None:
    """Add the schedules of the TOML file ``path`` to ``registry`` (see ``docs/scheduling.md``).

    Raises:
        _UsageError: the file cannot be read or holds a bad schedule, a name is taken, or the
            registry cannot run a schedule's job type; one line naming ``source``.
    """
    try:
        found = load_schedules_file(path)
    except InvalidValue as exc:
        raise _UsageError(f"{source}: {exc}") from None
    for schedule in found:
        if schedule.name in registry.schedules:
            raise _UsageError(f"{source}: schedule {schedule.name!r} is already registered")
        if registry.find(schedule.job_type) is None:
            raise _UsageError(
                f"{source}: schedule {schedule.name!r}: unknown job type "
                f"{schedule.job_type!r}; known: {', '.join(registry.names())}"
            )
        registry.schedules[schedule.name] = schedule


def load_registry(spec: str | None, source: str = "TASKS_APP") -> TaskRegistry:
    """Return the registry named by ``spec`` (``module:attribute``), or the demo registry.

    The attribute may be a :class:`TaskRegistry` or a function returning one. The current
    directory is importable, as with ``python -m``.

    Raises:
        _UsageError: the module cannot be imported, the attribute is missing, is not a
            registry, or has no job types; the message names ``source``.
    """
    if spec is None:
        return demo_registry()
    where = f"{source}={spec!r}"
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name.strip() or not attribute.strip():
        raise _UsageError(f"{where}: expected module:attribute, e.g. myapp.tasks:registry")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name.strip())
    except ImportError as exc:
        raise _UsageError(f"{where}: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise _UsageError(
            f"{where}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    for part in attribute.strip().split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise _UsageError(f"{where}: {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(target, TaskRegistry) and callable(target):
        try:
            target = target()
        except Exception as exc:
            raise _UsageError(f"{where}: calling it failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(target, TaskRegistry):
        raise _UsageError(
            f"{where}: expected a trio_tasks.TaskRegistry, got {type(target).__name__}"
        )
    if not len(target) and not target.has_fallback:
        raise _UsageError(f"{where}: the registry has no job types and no fallback handler")
    return target
