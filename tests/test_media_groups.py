"""Telegram albums gathered back into one (bot/adapters/media_groups.py), with its bounds."""

from __future__ import annotations

import asyncio

from bot.adapters.media_groups import Joined, MediaGroups


def test_parts_arriving_close_together_are_one_album_once_they_stop():
    async def scenario():
        groups: MediaGroups[str] = MediaGroups(quiet_s=0.2, max_parts=3, max_pending=1)
        started = asyncio.get_running_loop().time()
        assert groups.join((1, "g"), "a") is Joined.FIRST
        gathering = asyncio.create_task(groups.gather((1, "g")))
        for part in ("b", "c", "d"):  # "d" is one past max_parts
            await asyncio.sleep(0.1)
            assert groups.join((1, "g"), part) is Joined.LATER
        assert groups.join((1, "other"), "x") is Joined.FULL  # max_pending albums gather
        parts = await gathering
        waited = asyncio.get_running_loop().time() - started
        return parts, waited, groups.join((1, "other"), "x")

    parts, waited, after = asyncio.run(scenario())
    assert parts == ["a", "b", "c"]
    # Quiet counted from the last part it kept ("c", at 0.2 s), not from the first.
    assert waited >= 0.39
    assert after is Joined.FIRST  # a finished album frees its place
