"""A worker's batch shared by org: a flood of what the worker already took cannot fill every place while
another org waits, and no place stays empty when nobody else does."""
from __future__ import annotations

import asyncio

from services.gpu_worker.org_share import OrgShare


async def hold(share: OrgShare, org: str, started: list[str], release: asyncio.Event) -> None:
    async with share.place(org):
        started.append(org)
        await release.wait()


async def test_an_org_alone_uses_every_place():
    share, started, release = OrgShare(max_running=4, org_cap=2), [], asyncio.Event()
    tasks = [asyncio.create_task(hold(share, "a", started, release)) for _ in range(6)]
    await asyncio.sleep(0.01)
    assert started == ["a"] * 4
    release.set()
    await asyncio.gather(*tasks)
    assert len(started) == 6 and share.total == 0


async def test_a_freed_place_goes_to_the_waiting_org_with_fewest_running():
    share, started = OrgShare(max_running=4, org_cap=2), []
    releases = [asyncio.Event() for _ in range(8)]
    tasks = [asyncio.create_task(hold(share, "a", started, releases[i])) for i in range(6)]
    await asyncio.sleep(0.01)
    victim = asyncio.create_task(hold(share, "b", started, asyncio.Event()))
    await asyncio.sleep(0.01)
    assert started == ["a"] * 4
    releases[0].set()
    await asyncio.sleep(0.01)
    assert started[-1] == "b"  # org A's two waiting jobs came first but A is over its share
    releases[1].set()
    await asyncio.sleep(0.01)
    assert started.count("a") == 5  # B waits for nothing else: A may take the place again
    victim.cancel()
    for event in releases:
        event.set()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_job_cancelled_while_it_waits_takes_no_place():
    share, started, release = OrgShare(max_running=1, org_cap=1), [], asyncio.Event()
    first = asyncio.create_task(hold(share, "a", started, release))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(hold(share, "b", started, asyncio.Event()))
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.sleep(0.01)
    release.set()
    await first
    assert started == ["a"] and share.total == 0
