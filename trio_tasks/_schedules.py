"""Periodic jobs: a schedule's definition and its tick arithmetic.

A schedule ticks on a 5-field cron expression (parsed by `cronsim`_, in the schedule's
timezone) or every fixed interval (a Go duration, ticks at whole multiples of the interval
since the Unix epoch, so every node computes the same ticks whatever its start time). Each
tick becomes one job whose id derives from the schedule's name and the tick's time
(:meth:`Schedule.job_id`): every node submits it, idempotent submission keeps one.

.. _cronsim: https://pypi.org/project/cronsim/
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from cronsim import CronSim, CronSimError

from ._durations import format_duration, parse_duration
from ._errors import InvalidValue
from ._job import Priority
from ._request import MAX_RETRIES, MAX_TIMEOUT

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
#: The shortest ``every`` interval, in seconds.
MIN_EVERY = 0.1
#: Keys a schedule may have in a ``SCHEDULES_FILE`` table.
FILE_KEYS = frozenset(
    {
        "job_type",
        "cron",
        "every",
        "payload",
        "priority",
        "timezone",
        "catch_up",
        "timeout",
        "retries",
    }
)


@attrs.frozen
class ScheduleState:
    """What the broker keeps of a schedule, shared by every node.

    ``last_tick`` is the latest tick a node dealt with (submitted, or skipped while paused);
    ``last_job_id`` the id of the latest job submitted for it.
    """

    paused: bool = False
    last_tick: float | None = None
    last_job_id: str | None = None


@attrs.frozen
class Schedule:
    """A periodic job: which job to submit, and when (``cron`` or ``every`` seconds).

    Build one with :func:`build_schedule` (or ``TaskRegistry.schedule``), which validates it.
    """

    name: str
    job_type: str
    cron: str | None
    every: float | None
    payload: dict[str, Any]
    priority: Priority
    timezone: str
    catch_up: bool
    timeout: float | None
    retries: int | None

    @property
    def expression(self) -> str:
        """The cron expression, or ``every <duration>``."""
        if self.cron is not None:
            return self.cron
        assert self.every is not None
        return f"every {format_duration(self.every)}"

    def next_tick(self, after: float) -> float:
        """The first tick strictly after ``after`` (POSIX seconds)."""
        if self.every is not None:
            return (math.floor(after / self.every) + 1) * self.every
        assert self.cron is not None
        start = datetime.fromtimestamp(math.floor(after), ZoneInfo(self.timezone))
        # CronSim yields ticks after ``start`` (whole minutes: never ``start`` itself when it
        # is a tick, since it then ticks from the next second on).
        tick: datetime = next(CronSim(self.cron, start))
        return tick.timestamp()

    def last_tick(self, at: float) -> float | None:
        """The latest tick at or before ``at``; ``None`` when there is none within a year
        and a day (a cron expression such as ``0 0 30 2 *`` never matches)."""
        if self.every is not None:
            return math.floor(at / self.every) * self.every
        assert self.cron is not None
        # Reversed, CronSim yields ticks strictly before its start: start a second later.
        start = datetime.fromtimestamp(math.floor(at) + 1, ZoneInfo(self.timezone))
        try:
            tick: datetime = next(CronSim(self.cron, start, reverse=True))
        except StopIteration:  # pragma: no cover - validated expressions always match
            return None
        found = tick.timestamp()
        return found if at - found <= 366 * 86400 else None

    def job_id(self, tick: float) -> str:
        """The id of the job of ``tick``: ``sched:<name>:<tick, RFC 3339 UTC>``."""
        moment = datetime.fromtimestamp(tick, UTC)
        spec = "milliseconds" if moment.microsecond else "seconds"
        return f"sched:{self.name}:{moment.isoformat(timespec=spec).replace('+00:00', 'Z')}"


def build_schedule(
    name: str,
    *,
    job_type: str,
    cron: str | None = None,
    every: str | float | None = None,
    payload: dict[str, Any] | None = None,
    priority: Priority | str | int = "normal",
    timezone: str = "UTC",
    catch_up: bool = True,
    timeout: str | float | None = None,
    retries: int | None = None,
) -> Schedule:
    """Validate a schedule's settings and return it.

    Raises:
        InvalidValue: a malformed name, not exactly one of ``cron`` and ``every``, an
            expression that does not parse, an unknown timezone, or another bad option; the
            message names the schedule and the option.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidValue(f"schedule name must be 1-100 letters, digits or '_.-', got {name!r}")
    where = f"schedule {name!r}"
    if not isinstance(job_type, str) or not job_type.strip():
        raise InvalidValue(f"{where}: job_type must be a non-empty string, got {job_type!r}")
    if (cron is None) == (every is None):
        raise InvalidValue(f"{where}: give exactly one of cron and every")
    interval = None
    if cron is not None:
        if not isinstance(cron, str) or len(cron.split()) != 5:
            raise InvalidValue(
                f"{where}: cron must be a 5-field expression such as '*/5 * * * *', got {cron!r}"
            )
        cron = " ".join(cron.split())
        try:
            CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise InvalidValue(f"{where}: bad cron expression {cron!r}: {exc}") from None
    else:
        assert every is not None
        interval = parse_duration(every, name=f"{where}: every")
        if not MIN_EVERY <= interval <= 366 * 86400:
            raise InvalidValue(f"{where}: every must be between 100ms and 8784h, got {every!r}")
    if not isinstance(timezone, str):
        raise InvalidValue(f"{where}: timezone must be a name such as 'Europe/Berlin'")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue(
            f"{where}: unknown timezone {timezone!r}; expected an IANA name such as 'Europe/Berlin'"
        ) from None
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise InvalidValue(f"{where}: payload must be a dict, got {type(payload).__name__}")
    if not isinstance(catch_up, bool):
        raise InvalidValue(f"{where}: catch_up must be true or false, got {catch_up!r}")
    seconds = None
    if timeout is not None:
        seconds = parse_duration(timeout, name=f"{where}: timeout")
        if not 0 < seconds <= MAX_TIMEOUT:
            raise InvalidValue(f"{where}: timeout must be > 0 and at most 168h, got {timeout!r}")
    if retries is not None and (
        not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES
    ):
        raise InvalidValue(f"{where}: retries must be an int from 0 to 100, got {retries!r}")
    return Schedule(
        name=name,
        job_type=job_type,
        cron=cron,
        every=interval,
        payload=payload,
        priority=Priority.parse(priority),
        timezone=timezone,
        catch_up=catch_up,
        timeout=seconds,
        retries=retries,
    )


def load_schedules_file(path: str) -> list[Schedule]:
    """Read the schedules of a TOML file: one table per schedule, named by its key::

        [nightly-report]
        job_type = "report"
        cron = "30 2 * * *"
        timezone = "Europe/Berlin"

    Raises:
        InvalidValue: the file cannot be read, is not TOML, or a schedule is invalid; the
            message names the file (and the schedule).
    """
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise InvalidValue(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValue(f"{path!r} is not valid TOML: {exc}") from None
    schedules = []
    for name, table in data.items():
        if not isinstance(table, Mapping):
            raise InvalidValue(f"{path!r}: {name!r} must be a table ([{name}])")
        unknown = set(table) - FILE_KEYS
        if unknown:
            raise InvalidValue(
                f"{path!r}: schedule {name!r} has unknown key(s) {', '.join(sorted(unknown))}; "
                f"expected {', '.join(sorted(FILE_KEYS))}"
            )
        try:
            schedules.append(build_schedule(name, **table))
        except TypeError as exc:  # job_type missing
            raise InvalidValue(f"{path!r}: schedule {name!r}: {exc}") from None
        except InvalidValue as exc:
            raise InvalidValue(f"{path!r}: {exc}") from None
    return schedules
