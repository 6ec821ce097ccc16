"""Every retry rule, against the real fault server, for both clients (the ``api`` matrix)."""

from __future__ import annotations

import contextlib
import time
import uuid
from email.utils import formatdate

import pytest

from infra.http import (
    BreakerConfig,
    DeadlineExceeded,
    RetryAfterTooLong,
    RetryBudgetConfig,
    RetryConfig,
    TimeoutConfig,
    TransportError,
)
from infra.testing.fault_server import FaultServer

NO_BREAKER = BreakerConfig(enabled=False)
FAST = RetryConfig(backoff=(0.01, 0.02, 0.04))


def key() -> str:
    return uuid.uuid4().hex[:12]


@pytest.mark.parametrize("code", [408, 425, 429, 500, 502, 503, 504])
async def test_retry_statuses_are_retried_for_get(api, server: FaultServer, code: int) -> None:
    """Each retryable status gets another try; the caller sees the eventual 200 and the history."""
    k = key()
    r = await api.get(f"{server.url}/fail/{k}?n=2&code={code}")
    assert r.status == 200
    assert server.hits[f"fail/{k}"] == 3
    assert [a.status for a in r.history] == [code, code, 200]


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422, 501])
async def test_other_statuses_are_not_retried(api, server: FaultServer, code: int) -> None:
    """A non-retryable status is returned as-is after one try."""
    k = key()
    r = await api.get(f"{server.url}/fail/{k}?n=5&code={code}")
    assert r.status == code
    assert server.hits[f"fail/{k}"] == 1


async def test_attempts_caps_the_tries(make_api, server: FaultServer) -> None:
    """attempts=3 means three retries: four tries, then the last failing response is returned."""
    api = make_api(retry=FAST, breaker=NO_BREAKER)
    k = key()
    r = await api.get(f"{server.url}/fail/{k}?n=100&code=503")
    assert r.status == 503
    assert server.hits[f"fail/{k}"] == 4
    assert len(r.history) == 4


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_non_idempotent_request_is_never_sent_twice(api, server: FaultServer, method: str) -> None:
    """A POST / PATCH that got a 503 or a reset is not retried without opt-in (the server counts)."""
    k = key()
    r = await api.request(method, f"{server.url}/fail/{k}?n=1&code=503", content=b"body")
    assert r.status == 503
    assert server.hits[f"fail/{k}"] == 1
    k2 = key()
    with pytest.raises(TransportError) as info:
        await api.request(method, f"{server.url}/reset-before-headers/{k2}", content=b"body")
    assert server.hits[f"reset-before-headers/{k2}"] == 1
    assert info.value.attempts == 1


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
async def test_idempotent_methods_are_retried_after_a_reset(api, server: FaultServer, method: str) -> None:
    """A reset before the response headers is retried for idempotent methods."""
    k = key()
    r = await api.request(method, f"{server.url}/reset-before-headers/{k}?n=1")
    assert r.status == 200
    assert server.hits[f"reset-before-headers/{k}"] == 2


async def test_idempotent_opt_in_retries_post_under_one_key(api, server: FaultServer) -> None:
    """idempotent=True adds an Idempotency-Key and sends the same one on every attempt."""
    k = key()
    r = await api.post(f"{server.url}/reset-before-headers/{k}?n=2", content=b"x", idempotent=True)
    assert r.status == 200
    seen = server.requests[f"reset-before-headers/{k}"]
    assert len(seen) == 3
    keys = {s["idempotency_key"] for s in seen}
    assert len(keys) == 1 and None not in keys


async def test_caller_idempotency_key_makes_post_retryable(api, server: FaultServer) -> None:
    """A POST that already carries an Idempotency-Key is retried, with that key unchanged."""
    k = key()
    r = await api.post(f"{server.url}/fail/{k}?n=1", content=b"x", headers={"idempotency-key": "abc"})
    assert r.status == 200
    assert server.hits[f"fail/{k}"] == 2


async def test_connect_errors_are_retried_even_for_post(make_api) -> None:
    """Nothing reached a server that refused the connection, so even a POST is retried (then fails)."""
    api = make_api(retry=FAST, breaker=NO_BREAKER)
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError) as info:
        await api.post(f"http://127.0.0.1:{port}/x", content=b"x")
    assert info.value.kind == "connect"
    assert [a.error for a in info.value.history] == ["connect"] * 4
    assert isinstance(info.value.__cause__, Exception)


async def test_truncated_body_is_a_read_error_retried_for_get(api, server: FaultServer) -> None:
    """A body cut short (Content-Length not met) is a read error: retried for GET, then raised."""
    before = server.hits["truncated"]
    with pytest.raises(TransportError) as info:
        await api.get(f"{server.url}/truncated", deadline=10)
    assert info.value.kind == "read"
    assert server.hits["truncated"] - before == 4


async def test_reset_after_headers_is_retried_for_get(api, server: FaultServer) -> None:
    """A reset in the middle of the body is retried for GET."""
    k = key()
    r = await api.get(f"{server.url}/reset-after-headers/{k}?n=1")
    assert r.status == 200
    assert server.hits[f"reset-after-headers/{k}"] == 2


async def test_retry_after_zero_retries_at_once(make_api, server: FaultServer) -> None:
    """Retry-After: 0 replaces the (here 5 s) backoff: the retry follows immediately."""
    api = make_api(retry=RetryConfig(backoff=(5.0,), jitter=0.0))
    k = key()
    t0 = time.monotonic()
    r = await api.get(f"{server.url}/fail/{k}?n=1&retry_after=0")
    assert r.status == 200
    assert time.monotonic() - t0 < 2.0
    assert r.history[0].retry_after == 0.0


async def test_retry_after_seconds_is_waited(make_api, server: FaultServer) -> None:
    """Retry-After: 1 makes the client wait about a second (not the 10 ms backoff)."""
    api = make_api(retry=FAST)
    k = key()
    t0 = time.monotonic()
    r = await api.get(f"{server.url}/fail/{k}?n=1&code=429&retry_after=1")
    elapsed = time.monotonic() - t0
    assert r.status == 200
    assert elapsed >= 1.0
    assert r.history[0].retry_after == 1.0


async def test_retry_after_ms_is_honoured(make_api, server: FaultServer) -> None:
    """retry-after-ms (OpenAI / Azure style) is honoured with its finer grain."""
    api = make_api(retry=RetryConfig(backoff=(5.0,), jitter=0.0))
    k = key()
    t0 = time.monotonic()
    r = await api.get(f"{server.url}/fail/{k}?n=1&code=503&retry_after_ms=300")
    assert r.status == 200
    assert 0.3 <= time.monotonic() - t0 < 3.0
    assert r.history[0].retry_after == pytest.approx(0.3)


async def test_retry_after_http_date_is_honoured(make_api, server: FaultServer) -> None:
    """Retry-After as an HTTP-date two seconds ahead is waited for (about 1-2 s given its 1 s grain)."""
    api = make_api(retry=FAST)
    k = key()
    when = formatdate(time.time() + 2, usegmt=True).replace(" ", "%20").replace(",", "%2C")
    t0 = time.monotonic()
    r = await api.get(f"{server.url}/fail/{k}?n=1&code=503&retry_after={when}")
    assert r.status == 200
    assert time.monotonic() - t0 >= 0.9
    assert r.history[0].retry_after is not None and 0.5 < r.history[0].retry_after <= 2.0


async def test_retry_after_past_the_deadline_fails_at_once(api, server: FaultServer) -> None:
    """A server asking to wait 30 s on a 2 s deadline: RetryAfterTooLong at once, carrying retry_after."""
    k = key()
    t0 = time.monotonic()
    with pytest.raises(RetryAfterTooLong) as info:
        await api.get(f"{server.url}/fail/{k}?n=1&code=429&retry_after=30", deadline=2.0)
    assert time.monotonic() - t0 < 1.0
    assert info.value.retry_after == 30.0
    assert info.value.response is not None and info.value.response.status == 429
    assert isinstance(info.value, DeadlineExceeded)
    assert server.hits[f"fail/{k}"] == 1


async def test_retry_after_over_the_cap_fails_at_once(make_api, server: FaultServer) -> None:
    """Retry-After above max_retry_after fails at once even when the deadline would allow the wait."""
    api = make_api(retry=RetryConfig(max_retry_after=5.0))
    k = key()
    with pytest.raises(RetryAfterTooLong) as info:
        await api.get(f"{server.url}/fail/{k}?n=1&code=503&retry_after=20", deadline=60)
    assert info.value.retry_after == 20.0


async def test_retry_after_ignored_when_not_respected(make_api, server: FaultServer) -> None:
    """respect_retry_after=False falls back to the backoff."""
    api = make_api(retry=RetryConfig(backoff=(0.01,), respect_retry_after=False))
    k = key()
    t0 = time.monotonic()
    r = await api.get(f"{server.url}/fail/{k}?n=1&code=503&retry_after=30")
    assert r.status == 200
    assert time.monotonic() - t0 < 5


async def test_stream_is_never_retried_once_bytes_reached_the_caller(make_api, server: FaultServer) -> None:
    """A stream that stalls after its first line fails with the idle timeout; it is not sent again."""
    api = make_api(timeout=TimeoutConfig(idle=0.3), retry=FAST)
    before = server.hits["stall"]
    lines: list[bytes] = []
    with pytest.raises(TransportError) as info:
        if api.kind == "async":
            async with api.client.stream("GET", f"{server.url}/stall?chunks=1&stall=5") as resp:
                async for line in resp.aiter_lines():
                    lines.append(line)
        else:
            import asyncio

            def run() -> None:
                with api.client.stream("GET", f"{server.url}/stall?chunks=1&stall=5") as resp:
                    for line in resp.iter_lines():
                        lines.append(line)

            await asyncio.wait_for(asyncio.to_thread(run), 10)
    assert info.value.kind == "idle"
    assert lines == [b"line 0"]
    assert server.hits["stall"] - before == 1
    assert api.in_use() == 0


async def test_errors_carry_the_attempt_history(make_api, server: FaultServer) -> None:
    """A final error lists each attempt (kind, duration) in order."""
    api = make_api(retry=FAST, breaker=NO_BREAKER)
    k = key()
    with pytest.raises(TransportError) as info:
        await api.get(f"{server.url}/reset-before-headers/{k}")
    hist = info.value.history
    assert [a.number for a in hist] == [1, 2, 3, 4]
    assert all(a.error == "read" and a.elapsed >= 0 for a in hist)
    assert "attempts:" in str(info.value)


async def test_streams_retry_until_headers(api, server: FaultServer) -> None:
    """Before any byte reaches the caller a stream is retried like any GET."""
    k = key()
    lines = await api.stream_lines("GET", f"{server.url}/fail/{k}?n=2")
    assert lines == [b"3"]


async def test_redirects_are_returned_not_followed(api, server: FaultServer) -> None:
    """Both clients hand back a 3xx (httpx's transport never follows; aiohttp is told not to), so a
    redirect can't carry a call to another origin under this origin's limits, breaker and metrics."""
    before = server.hits["ok"]
    r = await api.get(f"{server.url}/redirect?to=/ok")
    assert r.status == 302 and r.headers["location"] == "/ok"
    assert server.hits["ok"] == before


async def test_both_clients_send_the_same_default_headers(api, server: FaultServer) -> None:
    """Same User-Agent / Accept / Accept-Encoding from every backend; a caller's header wins."""
    sent = (await api.get(f"{server.url}/headers")).json()
    assert sent["user-agent"].startswith("perf-infra/")
    assert sent["accept"] == "*/*"
    assert "gzip" in sent["accept-encoding"]
    custom = (await api.get(f"{server.url}/headers", headers={"user-agent": "mine"})).json()
    assert custom["user-agent"] == "mine"


async def test_no_cookies_are_kept_between_calls(api, server: FaultServer) -> None:
    """A shared client never replays one response's Set-Cookie on a later call."""
    base = f"http://localhost:{server.port}"  # a host name: cookie jars ignore cookies from bare IPs
    await api.get(f"{base}/status/200?set_cookie=session%3Dalice%3B%20Path%3D%2F")
    sent = (await api.get(f"{base}/headers")).json()
    assert "cookie" not in sent


async def test_caller_errors_pass_through_unchanged(api, server: FaultServer) -> None:
    """A bad argument is the caller's bug, not a transport failure: its own exception, not retried."""
    with pytest.raises((TypeError, ValueError)):
        await api.post(f"{server.url}/ok", content=object())
    with pytest.raises(ValueError, match="scheme"):
        await api.get("ftp://example.com/x")


async def test_connect_timeout_is_a_connect_error_retried_for_any_method(make_api) -> None:
    """A server whose accept queue is full never completes the handshake: each try stops at
    timeout.connect, and (nothing was sent) even a POST is retried."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue: later SYNs are dropped
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        api = make_api(timeout=TimeoutConfig(connect=0.2), retry=RetryConfig(attempts=1, backoff=(0.01,)))
        t0 = time.monotonic()
        with pytest.raises(TransportError) as info:
            await api.post(f"http://127.0.0.1:{port}/x", content=b"x")
        assert info.value.kind == "connect"
        assert [a.error for a in info.value.history] == ["connect", "connect"]
        assert 0.35 <= time.monotonic() - t0 < 3.0
    finally:
        for s in fillers:
            s.close()
        listener.close()


@pytest.mark.parametrize("attempts", [0, 3])
async def test_the_server_receives_exactly_the_tries_reported(make_api, attempts: int) -> None:
    """On a reused keep-alive connection that resets, every backend sends each try once: the server counts
    as many requests as the call's history reports (aiohttp on its own resent each one: 2 for attempts=0,
    8 for attempts=3)."""
    with FaultServer() as server:
        api = make_api(
            retry=RetryConfig(attempts=attempts, backoff=(0.001,), jitter=0),
            breaker=NO_BREAKER,
            retry_budget=RetryBudgetConfig(enabled=False),
        )
        assert (await api.get(f"{server.url}/ok")).status == 200  # a keep-alive connection to reuse
        k = key()
        with pytest.raises(TransportError) as info:
            await api.get(f"{server.url}/reset-before-headers/{k}")
        assert len(info.value.history) == attempts + 1
        assert server.hits[f"reset-before-headers/{k}"] == attempts + 1
        assert (await api.get(f"{server.url}/ok")).status == 200
        r = await api.get(f"{server.url}/fail/{k}?n=9&code=503")
        assert r.status == 503 and server.hits[f"fail/{k}"] == len(r.history or [r]) == attempts + 1
