"""The sliding-window limiter: counts per key, says when to come back, forgets old keys."""

from __future__ import annotations

from bot.chat.ratelimit import RateLimiter


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_over_its_limit_is_told_when_to_come_back_and_refunds_uncount():
    clock = _Clock()
    limiter = RateLimiter(2, 60.0, clock)
    assert limiter.retry_after("alice") == 0 and limiter.retry_after("alice") == 0
    clock.now += 10
    assert limiter.retry_after("alice") == 50.0  # the first try leaves the window in 50 s
    assert limiter.retry_after("bob") == 0  # keys are independent
    limiter.refund("bob")
    assert limiter.retry_after("bob") == 0 and limiter.retry_after("bob") == 0
    clock.now += 50
    assert limiter.retry_after("alice") == 0


def test_keys_of_people_long_gone_are_forgotten():
    clock = _Clock()
    limiter = RateLimiter(5, 60.0, clock)
    for user in range(10_000):  # months of uptime: each user came once
        limiter.retry_after(f"user-{user}")
        clock.now += 0.01
    assert len(limiter) > 9_000  # at most one window stale: pruning is once a window
    clock.now += 200
    limiter.retry_after("latecomer")
    assert len(limiter) == 1
