"""Parts of the Redis broker that need no Redis server: the record's field list shared by
Python and Lua, decoding that never raises, outcome batching, telling errors apart."""

from __future__ import annotations

import re
import time
from typing import Any

import trio

from trio_tasks._job import CORRUPT_RECORD, RECORD_FIELDS, Job, Priority, job_to_record
from trio_tasks.brokers._redis_codec import (
    NEW_JOB_FIELDS,
    SPARSE_NULL,
    Corrupt,
    Leased,
    decode_job,
    decode_job_array,
    encode_job,
    encode_new_job,
    new_record_fields,
    node_view,
    parse_leases,
    parse_status,
)
from trio_tasks.brokers._redis_keys import LIBRARY_NAME, RedisKeys
from trio_tasks.brokers._redis_scripts import FIELDS_PLACEHOLDER, OutcomeKind, library_code


def a_job() -> Job:
    return Job(
        id="job-1",
        type="noop",
        priority=Priority.HIGH,
        payload={"a": [1, 2]},
        max_attempts=3,
        timeout=5.0,
        created_at=time.time(),
    )


def test_the_lua_field_list_is_made_from_the_python_one() -> None:
    code = library_code()
    assert FIELDS_PLACEHOLDER not in code
    block = re.search(r"local FIELDS = \{(.*?)\}", code, re.S)
    assert block is not None
    assert tuple(re.findall(r"'(\w+)'", block.group(1))) == RECORD_FIELDS
    assert tuple(job_to_record(a_job())) == RECORD_FIELDS
    assert code.startswith(f"#!lua name={LIBRARY_NAME}\n")
    assert set(re.findall(r"'(tt\d+)_\w+'", code)) == {"tt8"}
    keys = RedisKeys.for_namespace("x")
    assert len({*keys.script_keys}) == 18
    assert all(k.startswith("tt:{x}:") for k in keys.script_keys)
    new_fields = re.search(r"local NEW_FIELDS = \{(.*?)\}", code, re.S)
    assert new_fields is not None
    assert tuple(re.findall(r"'(\w+)'", new_fields.group(1))) == NEW_JOB_FIELDS
    # A constant kept as text must say what its number says.
    cap = re.search(r"local WAKE_CAP = (\d+)", code)
    keep = re.search(r"local WAKE_KEEP = '(-\d+)'", code)
    assert cap is not None
    assert keep is not None
    assert int(keep.group(1)) == -int(cap.group(1))
    # The functions build the keys from the prefix, by names made from the same list.
    names = re.search(r"local KEY_NAMES = \{(.*?)\}", code, re.S)
    assert names is not None
    assert ["tt:{x}:" + n for n in re.findall(r"'([\w:]+)'", names.group(1))] == list(
        keys.script_keys
    )
    assert keys.quarantine("j").startswith("tt:{x}:")
    assert keys.node("n").startswith("tt:{x}:")


def test_outcome_kinds_keep_their_wire_letters() -> None:
    assert [k.value for k in OutcomeKind] == ["c", "f", "r", "x", "l", "u"]
    assert {k for k in OutcomeKind if not k.frees_worker} == {
        OutcomeKind.RELEASED,
        OutcomeKind.UNFETCHED,
    }


def test_a_record_round_trips_and_garbage_never_raises() -> None:
    job = a_job()
    flat = encode_job(job)
    values = flat[1::2]
    decoded = decode_job(values, job.id)
    assert isinstance(decoded, Job)
    assert (decoded.id, decoded.priority, decoded.payload) == (job.id, job.priority, job.payload)
    assert decode_job([None] * len(RECORD_FIELDS), job.id) is None
    array = "[" + ",".join(values) + "]"
    assert isinstance(decode_job_array(array, job.id), Job)
    cases: dict[str, Any] = {
        "every field garbage": ["not json"] * len(RECORD_FIELDS),
        "wrong schema": ["99", *values[1:]],
        "truncated payload": [v if i != 4 else '{"a": 1' for i, v in enumerate(values)],
        "bad priority": [v if i != 3 else "9" for i, v in enumerate(values)],
    }
    for name, bad in cases.items():
        found = decode_job(bad, job.id)
        assert isinstance(found, Corrupt), name
        assert found.job_id == job.id
        assert found.problem, name
        as_array = decode_job_array("[" + ",".join(bad) + "]", job.id)
        assert isinstance(as_array, Corrupt), name
    problem = decode_job(cases["truncated payload"], job.id)
    assert isinstance(problem, Corrupt)
    assert "payload" in problem.problem
    problem = decode_job(cases["wrong schema"], job.id)
    assert isinstance(problem, Corrupt)
    assert "99" in problem.problem
    assert isinstance(parse_status('"zombie"', job.id), Corrupt)
    assert isinstance(parse_status("garbage", job.id), Corrupt)
    # A lease reply: one good, one undecodable (takes a worker's turn), one key of another type.
    leases = parse_leases(["7", "job-1", array, "8", "job-2", "[1", "string", "job-3", None])
    assert isinstance(leases.taken[0], Leased)
    assert leases.taken[0].token == "7"
    assert [c.job_id for c in leases.corrupt()] == ["job-2", "job-3"]
    assert "string" in leases.strays[0].problem


def test_a_new_jobs_record_leaves_out_null_and_empty_fields_and_reads_back_whole() -> None:
    job = a_job()
    flat = encode_job(job, new=True)
    stored = dict(zip(flat[::2], flat[1::2], strict=True))
    assert set(stored) == {
        "v", "id", "type", "priority", "payload", "status",
        "attempts", "max_attempts", "timeout", "created_at",
    }  # fmt: skip
    # As HMGET of every field answers for such a hash (nil for a missing field).
    decoded = decode_job([stored.get(name) for name in RECORD_FIELDS], job.id)
    assert isinstance(decoded, Job)
    assert job_to_record(decoded) == job_to_record(job)
    # As record_json answers (null for a missing field).
    array = "[" + ",".join(stored.get(name, "null") for name in RECORD_FIELDS) + "]"
    from_array = decode_job_array(array, job.id)
    assert isinstance(from_array, Job)
    assert job_to_record(from_array) == job_to_record(job)
    # A field that is set is stored, whatever it is.
    job.run_at, job.meta = 12.5, {"trace": "t-1"}
    stored = dict(zip(*[iter(encode_job(job, new=True))] * 2, strict=True))
    assert stored["run_at"] == "12.5"
    assert stored["meta"] == '{"trace":"t-1"}'
    # A missing field that a record must have is still a corrupt record.
    values = [stored.get(name) for name in RECORD_FIELDS]
    values[RECORD_FIELDS.index("status")] = None
    assert isinstance(decode_job(values, job.id), Corrupt)


def test_a_new_jobs_fast_encoding_is_the_generic_one() -> None:
    # Every field is written always, or left out while null or empty: nothing is forgotten.
    assert {*NEW_JOB_FIELDS, *SPARSE_NULL, "meta", "errors"} == set(RECORD_FIELDS)
    jobs = [a_job() for _ in range(8)]
    jobs[1].run_at = 1e16
    jobs[2].meta = {"trace": "t-1", "é": "ü"}
    jobs[3].timeout = 5  # an int from a registry's default
    jobs[3].type = "naïve"
    jobs[4].meta = {"bad": "\ud800"}  # orjson refuses a lone surrogate: the generic path
    jobs[5].result = {"kept": True}  # not a new job's: the generic path
    jobs[6].errors = [{"attempt": 1}]
    jobs[7].payload = {"x": float("nan")}
    for job in jobs:
        stored = new_record_fields(encode_new_job(job))
        generic = encode_job(job, new=True)
        assert stored == dict(zip(generic[::2], generic[1::2], strict=True))
        decoded = decode_job([stored.get(n) for n in RECORD_FIELDS], job.id)
        assert isinstance(decoded, Job)
        assert decoded.meta == job.meta
        assert decoded.run_at == job.run_at


def test_salvaged_records_name_the_problem() -> None:
    from trio_tasks._job import salvage_record

    salvaged = salvage_record({"type": "noop", "priority": 9}, "job-9", "field 'x' is bad")
    assert salvaged.error is not None
    assert salvaged.error.type == CORRUPT_RECORD
    assert "field 'x' is bad" in salvaged.error.message
    assert isinstance(decode_job(encode_job(salvaged)[1::2], "job-9"), Job)


def test_node_registry_entries_that_do_not_decode_are_skipped() -> None:
    good = {
        "id": "n1",
        "seen_at": 1.5,
        "workers": [
            {
                "id": "w",
                "state": "idle",
                "current_job": None,
                "processed": 1,
                "succeeded": 1,
                "failed": 0,
            }
        ],
        "counters": {"completed": 1},
    }
    view = node_view(good)
    assert view is not None
    assert view.workers[0].id == "w"
    assert node_view({"id": "n2"}) is None
    assert node_view({**good, "workers": [{"bogus": 1}]}) is None


async def test_outcomes_recorded_together_share_one_write() -> None:
    from trio_tasks.brokers._redis_batch import Batcher

    calls: list[list[int]] = []
    fail = {"now": False}

    async def write(items: Any) -> tuple[float, list[int]] | None:
        calls.append(list(items))
        await trio.sleep(0.01)
        return None if fail["now"] else (1.5, [i * 10 for i in items])

    batcher: Batcher[int, int] = Batcher(write, max_batch=4)
    results: dict[int, tuple[int | None, float]] = {}

    async def submit(i: int) -> None:
        done = await batcher.submit(i)
        results[i] = (done.result, done.time)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(submit, i)
    # The first caller writes alone; the others queued meanwhile go in batches of at most 4,
    # each written by one of the waiting callers. (Trio runs the tasks in no fixed order.)
    assert [len(call) for call in calls] == [1, 4, 4, 1]
    assert sorted(i for call in calls for i in call) == list(range(10))
    assert results == {i: (i * 10, 1.5) for i in range(10)}
    fail["now"] = True
    assert (await batcher.submit(99)).result is None


def test_connection_errors_are_told_apart_from_refusals() -> None:
    import anyio
    import coredis.exceptions as errors

    from trio_tasks.brokers._redis_link import is_transient

    assert is_transient(errors.ConnectionError("lost"))
    assert is_transient(errors.BusyLoadingError("loading"))
    assert is_transient(TimeoutError())
    assert is_transient(
        ExceptionGroup("x", [errors.ConnectionError(), anyio.ClosedResourceError()])
    )
    assert is_transient(
        errors.ResponseError("READONLY You can't write against a read only replica")
    )
    assert is_transient(errors.ResponseError("OOM command not allowed"))
    assert not is_transient(errors.ResponseError("ERR user_script:1: Script attempted to access"))
    assert not is_transient(ExceptionGroup("x", [errors.ConnectionError(), ValueError()]))
    assert not is_transient(ValueError())


async def test_a_retry_with_a_budget_tries_once_more_at_its_end_whatever_the_backoff(
    autojump_clock: trio.testing.MockClock, monkeypatch: Any
) -> None:
    """An outcome is retried for its whole budget (``outcome_timeout``): Redis answering again
    before the budget ends gets it written, even when the next backoff pause would end after
    (the pauses of a node that has failed many calls are ``retry_cap / 2`` to ``retry_cap``)."""
    import random

    import coredis.exceptions as errors

    from trio_tasks._errors import BrokerUnavailable
    from trio_tasks._log import library_logger
    from trio_tasks.brokers._redis_link import RedisLink

    monkeypatch.setattr(random, "uniform", lambda low, high: (low + high) / 2)
    link = RedisLink(library_logger(), retry_cap=2.0)

    async def written_once_back(away: float) -> tuple[str | None, list[float]]:
        for _ in range(20):  # the node's other tasks failed too: every pause is 1.5 s
            link.failed(errors.ConnectionError("down"))
        start = trio.current_time()
        tries: list[float] = []

        async def call() -> str:
            tries.append(round(trio.current_time() - start, 6))
            if trio.current_time() - start < away:
                raise errors.ConnectionError("down")
            return "written"

        try:
            return await link.retry(call, budget=4.0), tries
        except BrokerUnavailable:
            return None, tries

    # Away for 3.2 s of the 4 s budget: tries at 0, 1.5 and 3 fail, the last at 4 succeeds.
    assert await written_once_back(3.2) == ("written", [0.0, 1.5, 3.0, 4.0])
    # Away all along: given up at the budget's end, not before, not after.
    assert await written_once_back(60.0) == (None, [0.0, 1.5, 3.0, 4.0])
