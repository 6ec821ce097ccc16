"""A process that used AsyncPerfClient over pyreqwest exits 0, the client closed or not.

Before ``_reqwest.settle_at_exit`` about 1 such process in 6 aborted at interpreter exit (SIGABRT, exit 134:
"PyGILState_Release: thread state ... must be current when releasing"; here 22 of 120 children, every case
hit): pyreqwest's tokio thread, waking the program's last await, was still inside ``call_soon_threadsafe``
(the GIL released to write the loop's wake-up byte) when the main thread finalized. The race is in each
process's last moments, so it is only seen over many processes: each case runs in its own child.
"""

from __future__ import annotations

import _thread
import collections
import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from http_h2_servers import HypercornH2C

import infra

pytestmark = [
    pytest.mark.each_backend,  # names its backend itself (in the children)
    pytest.mark.skipif(
        importlib.util.find_spec("pyreqwest") is None, reason="pyreqwest not installed (the native extra)"
    ),
]

# One launcher process loads the client's modules once (aiohttp is most of a child's CPU), then forks the
# children; each runs one case and falls off the end of the script, so its interpreter finalizes as a
# worker's does. pyreqwest's runtime starts in each child (on its first client), never before a fork.
# http2_backend "pyreqwest" carries the h2c origin; backend "pyreqwest" carries HTTP/1.1 (rq-h1).
LAUNCHER = """
import asyncio, json, os, sys
import pyreqwest.client
from infra.http import AsyncPerfClient
import infra.http._async_client

KEPT = []


async def main(url, case):
    origin = url.split("/")[2]
    kw = {"backend": "pyreqwest"} if case.endswith("h1") else {
        "http2_hosts": (origin,), "http2_backend": "pyreqwest"}
    if case.startswith("closed"):
        async with AsyncPerfClient(**kw) as client:
            for _ in range(3):
                assert (await client.get(url)).status == 200
    else:  # never closed: still referenced when the interpreter finalizes
        client = AsyncPerfClient(**kw)
        KEPT.append(client)
        for _ in range(3):
            assert (await client.get(url)).status == 200


url, cases, at_once = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
mine, alive, codes = None, {}, []
for case in cases:
    while len(alive) >= at_once:
        pid, status = os.wait()
        codes.append([alive.pop(pid), os.waitstatus_to_exitcode(status)])
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        mine = case
        break
    alive[pid] = case
if mine is not None:
    asyncio.run(main(url, mine))
else:
    while alive:
        pid, status = os.wait()
        codes.append([alive.pop(pid), os.waitstatus_to_exitcode(status)])
    print(json.dumps(codes))
"""
CASES = ("closed-h2c", "open-h2c", "closed-h1")
RUNS = int(os.environ.get("PYREQWEST_EXIT_RUNS", "20"))  # per case: 60 children, about 12 s on 2 cores


def test_a_process_that_used_pyreqwest_exits_0_closed_or_not() -> None:
    pytest.importorskip("hypercorn")
    env = {**os.environ, "PYTHONPATH": str(Path(infra.__file__).resolve().parents[1])}
    with HypercornH2C() as srv:
        url = f"http://127.0.0.1:{srv.port}/ok"
        out = subprocess.run(
            [sys.executable, "-c", LAUNCHER, url, ",".join(c for _ in range(RUNS) for c in CASES), "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr[-3000:]
    codes: dict[str, collections.Counter[int]] = {c: collections.Counter() for c in CASES}
    for case, rc in json.loads(out.stdout):
        codes[case][rc] += 1
    assert all(set(c) == {0} for c in codes.values()), f"exit codes per case: {codes}\n{out.stderr[-2000:]}"


def test_settle_at_exit_waits_until_a_native_thread_leaves_python() -> None:
    """A thread threading does not know (started as pyreqwest's is, outside the threading module) inside
    Python code is waited for, at most ``limit``; one that left is not."""
    from infra.http._reqwest import native_threads_in_python, settle_at_exit

    inside, leave = threading.Event(), threading.Event()

    def native() -> None:
        inside.set()
        leave.wait(10)

    assert settle_at_exit(limit=10)  # nothing (left) to wait for in the test process
    _thread.start_new_thread(native, ())
    assert inside.wait(10)
    assert native_threads_in_python()
    assert not settle_at_exit(limit=0.01)  # still inside: gives up at the limit
    leave.set()
    assert settle_at_exit(limit=10)
    assert not native_threads_in_python()
