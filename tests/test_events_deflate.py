"""``GET /events`` compressed (``Content-Encoding: deflate``) for clients that take it, each tick's
text compressed once for every reader; and ticks that lengthen with the readers, so that a
hundred dashboards cost the node a bounded share."""

from __future__ import annotations

import random
import zlib
from typing import Any

import pytest
import trio
import trio.testing
from test_events import progress_registry
from test_events_ticks import a_job, frames

import trio_tasks
from trio_tasks._events import MAX_TICK, TICK, TICK_PER_READER
from trio_tasks.http import create_app
from trio_tasks.http._deflate import (
    DeflateWriter,
    SharedPacker,
    accepts_deflate,
    adler32_combine,
    pack,
)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def test_adler32_combine_agrees_with_zlib() -> None:
    rng = random.Random(7)
    for size in (0, 1, 100, 65_520, 65_521, 65_522, 300_000):
        text = rng.randbytes(size)
        for cut in {0, size // 3, size}:
            head, tail = text[:cut], text[cut:]
            combined = adler32_combine(zlib.adler32(head), zlib.adler32(tail), len(tail))
            assert combined == zlib.adler32(text), (size, cut)


def test_packed_texts_shared_by_several_streams_decode_in_each() -> None:
    rng = random.Random(3)
    texts = [rng.randbytes(rng.randrange(0, 5000)) + b"event: x\n\n" * 50 for _ in range(12)]
    packed = [pack(text) for text in texts]
    # Two streams interleave the same packed texts in different selections, as two readers of
    # different ticks would: each decodes to its own texts with a valid checksum.
    for selection in (range(12), range(3, 12, 2), []):
        writer = DeflateWriter()
        wire = b"".join(writer.write(packed[i]) for i in selection) + writer.end()
        assert zlib.decompress(wire) == b"".join(texts[i] for i in selection)
        corrupt = bytearray(wire)
        corrupt[-1] ^= 1
        with pytest.raises(zlib.error, match="incorrect data check"):
            zlib.decompress(bytes(corrupt))


def test_each_packed_text_is_decodable_as_soon_as_it_arrives() -> None:
    decompressor = zlib.decompressobj()
    writer = DeflateWriter()
    for text in (b"event: hello\ndata: {}\n\n", b": keep-alive\n\n", b"event: state\n\n" * 9):
        # A sync flush ends every packed text: nothing of it waits for the next one.
        assert decompressor.decompress(writer.write(pack(text))) == text
    assert decompressor.decompress(writer.end()) == b""
    assert decompressor.eof


def test_the_shared_packer_packs_one_object_once() -> None:
    packer = SharedPacker(kept=2)
    chunk = b"event: state\ndata: {}\n\n" * 10
    first = packer.pack(chunk)
    assert packer.pack(chunk) is first
    # An equal text that is another object is another tick's: packed again.
    other = bytes(bytearray(chunk))
    assert packer.pack(other) is not first
    packer.pack(b"a"), packer.pack(b"b")
    assert packer.pack(chunk) is not first  # forgotten after `kept` newer texts


@pytest.mark.parametrize(
    ("header", "taken"),
    [
        ("gzip, deflate, br, zstd", True),
        ("deflate", True),
        ("DEFLATE;q=0.5", True),
        ("gzip", False),
        ("", False),
        ("deflate;q=0", False),
        ("*", True),
        ("*;q=0", False),
        ("*, deflate;q=0", False),
        ("deflate;q=0, *", False),
        ("deflate;q=bogus", False),
        ("identity", False),
    ],
)
def test_accept_encoding(header: str, taken: bool) -> None:
    assert accepts_deflate(header) is taken


async def read_all(connection: Any) -> list[bytes]:
    received = []
    while True:
        try:
            received.append(await connection.receive())
        except trio.EndOfChannel:
            return received


async def test_a_client_that_takes_deflate_gets_the_stream_compressed() -> None:
    registry, gate = progress_registry()
    gate.set()
    async with trio_tasks.open_processor(registry, workers=2) as processor:
        client = create_app(processor).test_client()
        headers = {"Accept-Encoding": "gzip, deflate"}
        async with client.request("/events", headers=headers) as connection:
            await connection.send_complete()
            # Each piece decodes as it comes: the hello before anything else happened.
            decompressor = zlib.decompressobj()
            first = await connection.receive()
            assert connection.status_code == 200
            assert connection.headers["Content-Encoding"] == "deflate"
            assert connection.headers["Vary"] == "Accept-Encoding"
            assert frames(decompressor.decompress(first)) == [
                ("hello", {"node": processor.broker.node_id})
            ]
            job = await processor.submit("work")
            seen: list[tuple[str, Any]] = []
            while not any(d.get("status") == "completed" for _, d in seen):
                seen += frames(decompressor.decompress(await connection.receive()))
            assert {d.get("id", d.get("job_id")) for _, d in seen} == {job.id}
            # Summaries of the job's newest state per tick: some of these, in this order.
            statuses = [d["status"] for name, d in seen if name == "state"]
            assert statuses[-1] == "completed"
            assert statuses == [s for s in ("pending", "running", "completed") if s in statuses]
            # At the stop, the stream ends with a final block and a checksum that holds.
            processor.shutdown(grace=0)
            rest = b"".join(await read_all(connection))
            assert decompressor.decompress(rest) == b""
            assert decompressor.eof
            assert decompressor.unused_data == b""


@pytest.mark.parametrize("header", [None, "gzip", "deflate;q=0"])
async def test_other_clients_get_the_stream_as_it_is(header: str | None) -> None:
    registry, _ = progress_registry()
    async with trio_tasks.open_processor(registry, workers=1) as processor:
        client = create_app(processor).test_client()
        headers = {} if header is None else {"Accept-Encoding": header}
        async with client.request("/events", headers=headers) as connection:
            await connection.send_complete()
            first = await connection.receive()
            assert "Content-Encoding" not in connection.headers
            assert connection.headers["Vary"] == "Accept-Encoding"
            assert frames(first)[0][0] == "hello"
            processor.shutdown(grace=0)
            await read_all(connection)


async def test_a_dropped_compressed_stream_says_so() -> None:
    registry, _ = progress_registry()
    async with trio_tasks.open_processor(registry, workers=2, max_concurrency=10_000) as processor:
        processor.events.max_events = 20
        client = create_app(processor).test_client()
        async with client.request("/events", headers={"Accept-Encoding": "deflate"}) as connection:
            await connection.send_complete()
            decompressor = zlib.decompressobj()
            assert frames(decompressor.decompress(await connection.receive()))[0][0] == "hello"
            await processor.submit_many([trio_tasks.JobRequest.build("quick") for _ in range(50)])
            text = decompressor.decompress(b"".join(await read_all(connection)))
            assert frames(text) == [("dropped", {"reason": "client too slow"})]
            assert decompressor.eof
        processor.shutdown(grace=0)


async def test_ticks_lengthen_with_the_readers_of_every_job(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = trio_tasks.Processor(trio_tasks.TaskRegistry()).events
    assert hub.tick_length() == TICK
    readers = [hub.subscribe() for _ in range(40)]
    hub.subscribe(job_id="job-1")  # a reader of one job wakes per event: no tick for it
    assert hub.tick_length() == pytest.approx(40 * TICK_PER_READER)
    readers += [hub.subscribe() for _ in range(500)]
    assert hub.tick_length() == MAX_TICK
    started = trio.current_time()
    hub.on_job_event("submitted", a_job(1))
    chunks = [await reader.next_chunk() for reader in readers]
    assert trio.current_time() - started == pytest.approx(MAX_TICK)
    assert all(chunk is chunks[0] for chunk in chunks)
    for reader in readers[1:]:
        reader.close()
    assert hub.tick_length() == TICK
    hub.on_job_event("submitted", a_job(2))
    started = trio.current_time()
    assert [d["id"] for _, d in frames(await readers[0].next_chunk())] == ["job-2"]
    assert trio.current_time() - started == pytest.approx(TICK)
