"""AsyncEngine: one worker, a bounded queue, timeouts, progress, failures that never kill it."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace

import pytest

from engine.async_engine import AsyncEngine
from engine.config import EngineLimits
from engine.errors import EngineBusy, EngineStopped, EngineTimeout, IndexCorrupt, NotAnImage
from engine.locator import Locator
from engine.results import Stage, Status
from tests.conftest import jpeg_bytes


def _engine(config, **limits) -> AsyncEngine:
    return AsyncEngine(lambda: Locator.open(config), replace(EngineLimits(), **limits))


def test_progress_events_arrive_in_order_and_the_answer_comes_back(street_index, street_queries):
    async def scenario():
        engine = _engine(street_index)
        await engine.start()
        events = []
        try:
            result = await engine.locate(jpeg_bytes(street_queries[0].rgb), top_k=3,
                                         on_progress=events.append)
        finally:
            await engine.close()
        return result, events

    result, events = asyncio.run(scenario())
    assert result.status is Status.LOCATED
    stages = [e.stage for e in events]
    assert stages[0] is Stage.QUEUED and events[0].position == 1
    assert stages.index(Stage.DECODING) < stages.index(Stage.DESCRIBING) < stages.index(
        Stage.SEARCHING) < stages.index(Stage.VERIFYING)
    assert stages[-1] is Stage.DONE
    verifying = [e for e in events if e.stage is Stage.VERIFYING]
    # Three candidates ranked, then up to three decided (the default cascade on a CPU).
    assert verifying[-1].step == verifying[-1].total == 6


def test_a_full_queue_is_refused_with_its_length(street_index, street_queries):
    async def scenario():
        engine = _engine(street_index, queue_size=1, batch_size=1)
        await engine.start()
        try:
            photo = jpeg_bytes(street_queries[0].rgb)
            return await asyncio.gather(*(engine.locate(photo, top_k=2) for _ in range(4)),
                                        return_exceptions=True)
        finally:
            await engine.close()

    outcomes = asyncio.run(scenario())
    busy = [o for o in outcomes if isinstance(o, EngineBusy)]
    answered = [o for o in outcomes if not isinstance(o, Exception)]
    assert busy and answered
    assert len(busy) + len(answered) == 4
    assert all(b.queue_length == 1 and "busy" in str(b) for b in busy)


def test_concurrent_jobs_are_all_answered(street_index, street_queries):
    async def scenario():
        engine = _engine(street_index, batch_size=4)
        await engine.start()
        try:
            photos = [jpeg_bytes(v.rgb) for v in street_queries]
            return await asyncio.gather(*(engine.locate(p, top_k=3) for p in photos))
        finally:
            await engine.close()

    results = asyncio.run(scenario())
    assert len(results) == len(street_queries)
    assert all(r.status is Status.LOCATED for r in results)


def test_a_job_past_its_timeout_is_stopped_and_the_engine_goes_on(street_index, street_queries):
    async def scenario():
        engine = _engine(street_index, job_timeout_s=0.001)
        await engine.start()
        try:
            for _ in range(3):
                with pytest.raises(EngineTimeout, match="longer than"):
                    await engine.locate(jpeg_bytes(street_queries[0].rgb))
            for _ in range(100):  # the cancelled jobs drain from the queue
                if engine.queue_length == 0:
                    break
                await asyncio.sleep(0.05)
            assert engine.queue_length == 0
            assert engine.healthy
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_a_bad_photo_gets_its_own_error_and_the_next_one_is_answered(
    street_index, street_queries
):
    async def scenario():
        engine = _engine(street_index)
        await engine.start()
        try:
            with pytest.raises(NotAnImage):
                await engine.locate(b"just some text, not a photo")
            return await engine.locate(jpeg_bytes(street_queries[0].rgb), top_k=3)
        finally:
            await engine.close()

    assert asyncio.run(scenario()).status is Status.LOCATED


def test_a_broken_index_fails_the_job_not_the_engine(tmp_path, street_index, street_queries):
    broken = tmp_path / "index"
    shutil.copytree(street_index.index_path, broken)
    shutil.rmtree(broken / "store")
    shutil.rmtree(broken / "features")

    async def scenario():
        engine = _engine(replace(street_index, index_path=broken))
        await engine.start()
        try:
            for _ in range(2):
                with pytest.raises(IndexCorrupt, match="reference picture"):
                    await engine.locate(jpeg_bytes(street_queries[0].rgb))
            assert engine.queue_length == 0
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_a_closed_engine_refuses_new_jobs(street_index, street_queries):
    async def scenario():
        engine = _engine(street_index)
        await engine.start()
        await engine.close()
        with pytest.raises(EngineStopped):
            await engine.locate(jpeg_bytes(street_queries[0].rgb))

    asyncio.run(scenario())
