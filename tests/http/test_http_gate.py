"""AsyncGate and wait_slots: the connection-slot limiters in front of AsyncPerfClient's backends."""

from __future__ import annotations

import asyncio

from infra.http._lease import AsyncGate, AsyncLease, wait_slots
from infra.http._metrics import NullMetrics


class _Stats:
    in_use = 0


async def _queue(gate: AsyncGate, order: list[str], name: str) -> None:
    if gate.free > 0:
        gate.free -= 1
    else:
        await gate.wait()
    order.append(name)


async def test_waiters_get_slots_first_come_first_served_and_newcomers_queue_behind() -> None:
    gate = AsyncGate(1)
    gate.free -= 1  # held
    order: list[str] = []
    tasks = [asyncio.create_task(_queue(gate, order, n)) for n in "abc"]
    await asyncio.sleep(0)
    assert order == [] and len(gate.waiters) == 3
    gate.release()  # handed to "a"; "free" stays 0, so a newcomer can't take it
    assert gate.free == 0
    late = asyncio.create_task(_queue(gate, order, "late"))
    await asyncio.sleep(0)
    assert order == ["a"]
    for _ in range(3):
        gate.release()
        await asyncio.sleep(0)
    assert order == ["a", "b", "c", "late"]
    gate.release()
    assert gate.free == 1 and not gate.waiters
    await asyncio.gather(*tasks, late)


async def test_a_slot_handed_to_a_caller_cancelled_before_it_ran_passes_on() -> None:
    gate = AsyncGate(1)
    gate.free -= 1
    order: list[str] = []
    first = asyncio.create_task(_queue(gate, order, "first"))
    second = asyncio.create_task(_queue(gate, order, "second"))
    await asyncio.sleep(0)
    gate.release()  # granted to "first" ...
    first.cancel()  # ... which is cancelled before it resumes
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert first.cancelled()
    assert order == ["second"]  # the slot went on instead of leaking
    gate.release()
    assert gate.free == 1 and not gate.waiters
    await second


async def test_a_cancelled_waiter_is_skipped() -> None:
    gate = AsyncGate(1)
    gate.free -= 1
    order: list[str] = []
    gone = asyncio.create_task(_queue(gate, order, "gone"))
    kept = asyncio.create_task(_queue(gate, order, "kept"))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    gate.release()
    await kept
    assert order == ["kept"] and gate.free == 0
    gate.release()
    assert gate.free == 1 and not gate.waiters


async def test_wait_slots_gives_the_host_slot_back_when_cancelled_waiting_for_a_global_one() -> None:
    host, everyone, stats = AsyncGate(2), AsyncGate(1), _Stats()
    everyone.free -= 1  # the only global slot is held elsewhere
    waiter = asyncio.create_task(wait_slots(host, everyone, NullMetrics(), stats))
    await asyncio.sleep(0)
    assert host.free == 1  # took a host slot, queues for the global one
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert host.free == 2 and stats.in_use == 0
    everyone.release()
    assert everyone.free == 1


async def test_a_lease_gives_its_slots_back_once() -> None:
    host, everyone, stats = AsyncGate(1), AsyncGate(1), _Stats()
    await wait_slots(host, everyone, NullMetrics(), stats)
    assert (host.free, everyone.free, stats.in_use) == (0, 0, 1)
    lease = AsyncLease(host, everyone, NullMetrics(), stats)
    lease.release()
    lease.release()
    assert (host.free, everyone.free, stats.in_use) == (1, 1, 0)


def test_affinity_decision_waits_only_for_a_connection_of_its_own_origin_that_will_come_back() -> None:
    """The sync client's choice before a request goes to httpcore (``_affinity.decide``): reuse, open, wait
    for its own origin's busy connection, or -- when none will come back -- close another origin's."""
    from infra.http._affinity import GO, WAIT, decide

    # idle_same, open_total, cap, returning_same, queued_same
    assert decide(1, 16, 16, 5, 3) is GO  # an idle connection of its own: reuse it
    assert decide(0, 10, 16, 2, 0) is GO  # room in the pool: open one, nothing closed
    assert decide(0, 10, 16, 2, 1) is WAIT  # others wait for this origin already: FIFO behind them
    assert decide(0, 16, 16, 2, 0) is WAIT  # pool full, one of ours will come back: wait for it
    assert decide(0, 16, 16, 0, 0) is GO  # none of ours will come back (none, or streams): evict and go
    assert decide(0, 16, 16, 0, 2) is GO
