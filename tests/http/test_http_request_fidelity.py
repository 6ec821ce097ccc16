"""A server sees the same request whichever client or backend ran, and a retry resends the same body.

Every test runs over the ``make_api`` matrix (AsyncPerfClient on aiohttp, PerfClient, AsyncPerfClient on
httpx) against a real recording server (``recorder.Recorder``), which keeps each request's raw target,
headers and body bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from recorder import Recorder

from infra.http import AsyncPerfClient, PerfClient, RetryConfig, TransportError
from infra.http._url import _plain_url, wire_url

DATA = bytes(range(256)) * 1024  # 256 KiB: several chunks
SHA = hashlib.sha256(DATA).hexdigest()[:16]
FAST = RetryConfig(backoff=(0.01, 0.02, 0.04))


@pytest.fixture(scope="module")
def rec() -> Iterator[Recorder]:
    with Recorder() as srv:
        yield srv


def k() -> str:
    return uuid.uuid4().hex[:12]


# -- 1. a retried upload resends its whole body, or is not retried -----------------------------------------


@pytest.mark.parametrize("kind", ["bytes", "bytesio", "file_at_offset"])
async def test_retried_upload_resends_the_whole_body(
    make_api: Any, rec: Recorder, kind: str, tmp_path: Path
) -> None:
    """First try answered 503: the retry sends the same bytes (a file rewound to where it stood), never 0."""
    api = make_api(retry=FAST)
    content: Any
    if kind == "bytes":
        content = DATA
    elif kind == "bytesio":
        content = io.BytesIO(DATA)
    else:
        path = tmp_path / "upload.bin"
        path.write_bytes(b"HEAD" + DATA)
        content = path.open("rb")
        content.seek(4)  # the body starts where the file stood when the call began
    key = k()
    try:
        r = await api.post(f"{rec.url}/r/{key}?fail=1", content=content, idempotent=True)
    finally:
        if kind == "file_at_offset":
            content.close()
    assert (r.status, r.json()["len"], r.json()["sha"], r.attempts) == (200, len(DATA), SHA, 2)
    seen = rec.seen(key)
    assert [s.sha for s in seen] == [SHA, SHA]
    assert [s.header("content-length") for s in seen] == [str(len(DATA))] * 2


async def test_one_shot_iterator_is_sent_once_and_not_retried(make_api: Any, rec: Recorder) -> None:
    """An iterator can be read once: its call answers with the first try's 503 rather than resend a
    different (empty) body under the same Idempotency-Key."""
    api = make_api(retry=FAST)
    key = k()
    r = await api.post(f"{rec.url}/r/{key}?fail=1", content=iter([DATA[:1000], DATA[1000:]]), idempotent=True)
    assert (r.status, r.attempts) == (503, 1)
    assert [s.sha for s in rec.seen(key)] == [SHA]


async def test_async_generator_upload_is_sent_once() -> None:
    """aiohttp's streaming-upload idiom, on both async backends: sent whole, once."""

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(DATA), 50_000):
            yield DATA[i : i + 50_000]

    with Recorder() as rec:
        for backend in ("aiohttp", "httpx"):
            key = k()
            async with AsyncPerfClient(backend=backend, retry=FAST) as client:
                r = await client.post(f"{rec.url}/r/{key}?fail=1", content=chunks(), idempotent=True)
            assert (r.status, r.attempts) == (503, 1), backend
            assert [s.sha for s in rec.seen(key)] == [SHA], backend
            assert rec.seen(key)[0].header("transfer-encoding") == "chunked"


async def test_spent_one_shot_body_is_refused_not_sent_short() -> None:
    """Whatever retry path asks a one-shot body for a second try after its first read it gets a typed
    TransportError, never an empty or partial body."""
    from infra.http._body import OneShot

    body = OneShot(iter([b"ab", b"cd"]))
    assert [c async for c in body.async_chunks()] == [b"ab", b"cd"]
    with pytest.raises(TransportError, match="one-shot"):
        body.async_chunks()
    sync_body = OneShot(iter([b"ab"]))
    assert list(sync_body.sync_chunks()) == [b"ab"]
    with pytest.raises(TransportError, match="one-shot"):
        sync_body.sync_chunks()
    untouched = OneShot(iter([b"ab"]))
    untouched.async_chunks()  # a try that never read it (a failed connect): it may still be sent whole
    assert [c async for c in untouched.async_chunks()] == [b"ab"]


def test_sync_client_refuses_an_async_iterable_body(rec: Recorder) -> None:
    async def gen() -> AsyncIterator[bytes]:
        yield b"x"

    key = k()
    agen = gen()
    with PerfClient() as client, pytest.raises(TypeError, match="async iterable"):
        client.post(f"{rec.url}/r/{key}", content=agen)
    assert rec.seen(key) == []
    asyncio.run(agen.aclose())


# -- 2. and 3. the same request bytes on every backend ----------------------------------------------------

CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "?a=1", {"params": {"b": "2"}}),
    ("GET", "?a=1&", {"params": [("lang", "en"), ("lang", "fr")]}),
    ("GET", "", {"params": {"lang": ["en", "fr"], "x": 1.5, "n": 3, "q": "a b/c:d@e?f&g=h+i%j#k'é✓"}}),
    ("GET", "?keep=1#frag", {"params": {"b": "2"}}),
    ("POST", "", {"json": {"text": "héllo ✓", "n": [1, 2]}}),
    ("POST", "", {"content": "héllo"}),
    ("POST", "", {"content": b"raw"}),
    ("POST", "", {"content": b""}),
    ("POST", "", {}),
    ("PUT", "", {}),
    ("DELETE", "", {}),
    ("PATCH", "", {"content": b"x", "headers": {"Content-Type": "text/csv"}}),
    ("POST", "", {"content": io.BytesIO(b"file body")}),
    ("GET", "", {"headers": {"X-Speaker": "Zoë"}}),
    ("POST", "", {"content": io.StringIO("héllo ✓\n")}),  # a text file: UTF-8, text/plain, as aiohttp
    ("PUT", "", {"content": [b"ab", b"cd"]}),
]


def _view(seen: Any, key: str) -> tuple[str, str, list[tuple[str, str]], bytes]:
    return seen.method, seen.target.replace(key, "KEY"), sorted(seen.headers), seen.body


@pytest.mark.parametrize(("method", "suffix", "kw"), CALLS)
async def test_every_backend_sends_the_same_request(
    rec: Recorder, method: str, suffix: str, kw: dict[str, Any]
) -> None:
    """Query (the URL's own plus ``params``, appended as aiohttp does), headers and body bytes are the same
    from aiohttp, httpx and PerfClient; json is encoded the default backend's way (ASCII, ", ")."""
    views = {}
    for label in ("aiohttp", "httpx", "sync"):
        key = k()
        call = dict(kw)
        if isinstance(call.get("content"), (io.BytesIO, io.StringIO)):
            call["content"] = type(call["content"])(call["content"].getvalue())
        url = f"{rec.url}/r/{key}{suffix}"
        if label == "sync":
            with PerfClient() as sync_client:
                r = await asyncio.to_thread(sync_client.request, method, url, **call)
        else:
            async with AsyncPerfClient(backend=label) as client:
                r = await client.request(method, url, **call)
        assert r.status == 200, label
        (seen,) = rec.seen(key)
        views[label] = _view(seen, key)
    assert views["httpx"] == views["aiohttp"]
    assert views["sync"] == views["aiohttp"]


# The URL a caller built by hand, with characters that need quoting: each backend sends the request-target a
# plain aiohttp session sends (yarl's quoting of the str), not its own (httpx sent "|", "[", "%zz", "%2f" raw
# and a space in the query as %20; reqwest "|" raw and a backslash as "/"). Suffix after /r/KEY -> target.
TARGETS = [
    pytest.param("/a b?q=a b", "/a%20b?q=a+b", id="space"),
    pytest.param("/é✓?q=é✓&e=😀", "/%C3%A9%E2%9C%93?q=%C3%A9%E2%9C%93&e=%F0%9F%98%80", id="non_ascii"),
    pytest.param("/a%20b?q=a%20b&r=%C3%A9", "/a%20b?q=a%20b&r=%C3%A9", id="already_encoded"),
    pytest.param("/50%/x?p=50%&q=%zz", "/50%25/x?p=50%25&q=%25zz", id="stray_percent"),
    pytest.param("/a%2fb%7e?q=%2f%7e%41&r=%e9", "/a%2Fb~?q=/~A&r=%E9", id="percent_case"),
    pytest.param("/a+b?q=a+b&r=%2B", "/a+b?q=a+b&r=%2B", id="plus"),
    pytest.param("/it's", "/it's", id="quote_in_path"),
    pytest.param("/x?q=it's", "/x?q=it's", id="quote_in_query"),
    pytest.param('/"x"<y>?q="x"<y>', "/%22x%22%3Cy%3E?q=%22x%22%3Cy%3E", id="dquote_angle"),
    pytest.param("/a|b{c}^`?q=a|b{c}^`", "/a%7Cb%7Bc%7D%5E%60?q=a%7Cb%7Bc%7D%5E%60", id="pipe_brace"),
    pytest.param("/a\\b?q=\\", "/a%5Cb?q=%5C", id="backslash"),
    pytest.param("/[x]?q=[x]", "/%5Bx%5D?q=%5Bx%5D", id="brackets"),
    pytest.param("/x?q=1#frag ment", "/x?q=1", id="fragment"),
    pytest.param("/./a/../b?q=.", "/b?q=.", id="dot_segments"),
    pytest.param("/x?", "/x", id="empty_query"),
    pytest.param("/x?q=a\tb", "/x?q=ab", id="tab"),
]


async def _targets_seen(rec: Recorder, method: str, url_of: Any, **kw: Any) -> dict[str, str]:
    """The request-target each client sent for ``url_of(key)`` (aiohttp, httpx, sync), the key as KEY."""
    seen = {}
    for label in ("aiohttp", "httpx", "sync"):
        key = k()
        url = url_of(key)
        if label == "sync":
            with PerfClient() as sync_client:
                r = await asyncio.to_thread(sync_client.request, method, url, **kw)
        else:
            async with AsyncPerfClient(backend=label) as client:
                r = await client.request(method, url, **kw)
        assert r.status == 200, (label, r.status)
        (one,) = rec.seen(key)
        seen[label] = one.target.replace(key, "KEY")
    return seen


@pytest.mark.parametrize(("suffix", "target"), TARGETS)
async def test_every_backend_sends_aiohttps_request_target(rec: Recorder, suffix: str, target: str) -> None:
    """A raw space, non-ASCII, a stray "%", "|", "[", a fragment... in the URL: the same bytes from every
    backend, the ones plain aiohttp (yarl) sends."""
    seen = await _targets_seen(rec, "GET", lambda key: f"{rec.url}/r/{key}{suffix}")
    assert seen == dict.fromkeys(seen, f"/r/KEY{target}")


async def test_params_on_a_url_that_needs_quoting(rec: Recorder) -> None:
    """``params`` appended to a hand-built URL with a space and non-ASCII: quoted together, as aiohttp."""
    seen = await _targets_seen(
        rec, "POST", lambda key: f"{rec.url}/r/{key}/a b?x=é", params={"q": "é ✓", "n": 1}, content=b"x"
    )
    assert seen == dict.fromkeys(seen, "/r/KEY/a%20b?x=%C3%A9&q=%C3%A9+%E2%9C%93&n=1")


_PLAIN = "aZ09-._~!$&'()*+,;=:@/?"
_QUOTED = [
    *'%#[]{}|\\^`"<> \t',
    *("%20", "%2f", "%7E", "%e9", "/./", "/../", "%2E", "%41", "%27", "%2C", "%E9%41", "%C3%28", "%C0%AF"),
    *("%C3%A9", "%F0%9F%98%80", "%2F", "%3F", "%26", "%3D", "%3B", "%2B", "%25", "%0A", "%7F", "%E9", "%23"),
]
_URL_TAIL = st.one_of(
    st.text(alphabet=_PLAIN, max_size=24),
    st.lists(
        st.one_of(
            st.sampled_from([*_PLAIN, *_QUOTED]),
            st.characters(min_codepoint=0x80, max_codepoint=0x1F600, exclude_categories=("Cs",)),
        ),
        max_size=16,
    ).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["http://h:8080", "https://Api.example.com", "http://127.0.0.1:9"]), _URL_TAIL)
@example(head="http://h", tail="?q=it's")
def test_wire_url_is_what_aiohttp_sends_and_the_others_keep(head: str, tail: str) -> None:
    """``wire_url`` (what call_args hands every backend): yarl parses it back to the target it read from
    the caller's URL (aiohttp sends what it did), httpx and reqwest take it as it is (reqwest but for a '
    in the query), and a URL the fast path leaves alone is one yarl leaves alone too."""
    import httpx
    from yarl import URL

    url = head + ("/" if tail[:1] not in ("/", "?", "#") else "") + tail
    target = URL(url).raw_path_qs
    wire = wire_url(url)
    assert URL(wire).raw_path_qs == target
    assert httpx.URL(wire).raw_path.decode() == target
    if wire == url:  # left as it is (the fast path): what yarl sends is what the caller wrote
        written = url[len(head) :]
        assert target == (written if written.startswith("/") else "/" + written)
    try:
        from pyreqwest.http import Url
    except ImportError:
        return
    parsed = Url(wire)
    path, _, query = target.partition("?")
    assert parsed.path == path
    assert (parsed.query_string or "") == query.replace("'", "%27")


@pytest.mark.parametrize("where", ["path", "query"])
def test_plain_url_keeps_only_escapes_yarl_keeps(where: str) -> None:
    """Byte by byte: a URL with "%XX" (either case) passes the fast path (left as it is) only where yarl
    sends that escape as it is, in the path or in the query."""
    from yarl import URL

    for byte in range(256):
        for escape in (f"%{byte:02X}", f"%{byte:02x}"):
            url = f"http://h/a{escape}b" if where == "path" else f"http://h/a?q=a{escape}b"
            kept = URL(url).raw_path_qs == url[len("http://h") :]
            assert (_plain_url(url) is not None) == kept, escape


def test_wire_url_host() -> None:
    """The host as aiohttp connects to it (IDNA, a default port dropped), the fragment left out."""
    assert wire_url("http://bücher.de/ü x#top") == "http://xn--bcher-kva.de/%C3%BC%20x"
    assert wire_url("HTTPS://Example.COM:443/a b") == "https://example.com/a%20b"
    assert wire_url("http://h:8080?a b") == "http://h:8080/?a+b"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/x",
        "http://127.0.0.1:99999/a b",
        "http://[::1/x",
        "http://:80/x",
        "http://h\\x/y",
    ],
)
async def test_a_url_aiohttp_refuses_is_refused_before_any_try(make_api: Any, url: str) -> None:
    """What yarl refuses (a plain aiohttp session raises InvalidUrlClientError, a ValueError) is a ValueError
    on every backend, before any try and naming no path or query: the aiohttp backend made it a try's fatal
    TransportError, async httpx an ExceptionGroup or its InvalidURL, pyreqwest its own ValueError, and the
    sync client tried to connect to port 99999 (a connect error)."""
    api = make_api()
    with pytest.raises(ValueError, match=r"^invalid URL: ") as caught:
        await api.get(url)
    assert "/x" not in str(caught.value) and "/a" not in str(caught.value)


async def test_url_credentials_are_sent_as_aiohttp_sends_them(rec: Recorder) -> None:
    """``user:password@`` in the URL: Basic auth from the decoded user and password on every backend, as
    aiohttp sends it (httpx's transports sent none), and the target and Host without them."""
    seen: dict[str, Any] = {}
    for label in ("aiohttp", "httpx", "sync"):
        key = k()
        url = f"{rec.url.replace('http://', 'http://us%20er:p%40ss@')}/r/{key}/a b"
        if label == "sync":
            with PerfClient() as sync_client:
                await asyncio.to_thread(sync_client.get, url)
        else:
            async with AsyncPerfClient(backend=label) as client:
                await client.get(url)
        (one,) = rec.seen(key)
        seen[label] = (one.target.replace(key, "KEY"), one.header("authorization"), one.header("host"))
    basic = "Basic " + base64.b64encode(b"us er:p@ss").decode()
    assert seen == dict.fromkeys(seen, ("/r/KEY/a%20b", basic, rec.url.split("://")[1]))


async def test_url_credentials_and_an_authorization_header_are_refused(rec: Recorder, make_api: Any) -> None:
    """Both: aiohttp's ValueError, before any try, on every backend (httpx and reqwest sent the header)."""
    api = make_api()
    key = k()
    url = f"{rec.url.replace('http://', 'http://user:pw@')}/r/{key}"
    with pytest.raises(ValueError, match="Cannot combine AUTHORIZATION header"):
        await api.get(url, headers={"authorization": "Bearer x"})
    assert rec.seen(key) == []


async def test_query_merges_like_aiohttp(rec: Recorder, make_api: Any) -> None:
    api = make_api()
    key = k()
    await api.get(f"{rec.url}/r/{key}?a=1", params={"b": "2"})
    await api.get(f"{rec.url}/r/{key}?a=1&", params=[("c", 3), ("c", 4)])
    await api.get(f"{rec.url}/r/{key}", params={})
    assert [s.target.split("?", 1)[-1] for s in rec.seen(key)] == ["a=1&b=2", "a=1&c=3&c=4", f"/r/{key}"]


@pytest.mark.parametrize("params", [{"stream": True}, {"n": None}, [("ok", "1"), ("flag", False)]])
async def test_bool_and_none_params_are_refused_before_any_try(
    rec: Recorder, make_api: Any, params: Any
) -> None:
    api = make_api()
    key = k()
    bad = next(
        name
        for name, value in (params.items() if isinstance(params, dict) else params)
        if value in (True, None, False) and not isinstance(value, str)
    )
    with pytest.raises(TypeError, match=repr(bad)):
        await api.get(f"{rec.url}/r/{key}", params=params)
    assert rec.seen(key) == []


async def test_json_body_is_aiohttps_encoding(rec: Recorder, make_api: Any) -> None:
    api = make_api()
    key = k()
    await api.post(f"{rec.url}/r/{key}", json={"text": "héllo ✓", "n": [1, 2]})
    (seen,) = rec.seen(key)
    assert seen.body == b'{"text": "h\\u00e9llo \\u2713", "n": [1, 2]}'
    assert seen.header("content-type") == "application/json"


async def test_http2_origins_send_the_same_query_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``http2_hosts`` origin (httpx + h2) dropped the URL's own query too; now it sends what aiohttp
    sends: the merged query, aiohttp's json bytes, a UTF-8 header value."""
    pytest.importorskip("hypercorn")
    import http_h2_servers

    seen: list[tuple[bytes, bytes, dict[bytes, bytes]]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await http_h2_servers.read_body(receive)
        seen.append((scope["query_string"], body, dict(scope["headers"])))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    monkeypatch.setattr(http_h2_servers, "_asgi_app", app)
    with http_h2_servers.HypercornH2C() as srv:
        call = {
            "params": {"b": "2"},
            "json": {"text": "héllo ✓", "n": [1, 2]},
            "headers": {"X-Speaker": "Zoë"},
        }
        async with AsyncPerfClient(http2_hosts=[f"127.0.0.1:{srv.port}"]) as client:
            r = await client.post(f"{srv.url}/x?a=1", **call)
            assert r.http_version == "HTTP/2"
        with PerfClient(http2=True) as sync_client:
            await asyncio.to_thread(sync_client.post, f"{srv.url}/x?a=1", **call)
    assert len(seen) == 2
    for query, body, headers in seen:
        assert query == b"a=1&b=2"
        assert body == b'{"text": "h\\u00e9llo \\u2713", "n": [1, 2]}'
        assert headers[b"x-speaker"] == "Zoë".encode()
        assert headers[b"content-type"] == b"application/json"


async def test_http2_origins_send_aiohttps_request_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over HTTP/2 (httpx + h2 h2c, async and sync; pyreqwest's h2c with --http-backend pyreqwest) a URL
    that needs quoting goes out as aiohttp's HTTP/1.1 target: the :path the server reads is the same."""
    pytest.importorskip("hypercorn")
    import http_h2_servers

    paths: list[bytes] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await http_h2_servers.read_body(receive)
        query = scope["query_string"]
        paths.append(scope["raw_path"] + (b"?" + query if query else b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    monkeypatch.setattr(http_h2_servers, "_asgi_app", app)
    cases = {
        "/a b/é?q=a b&r=é|[x]": b"/a%20b/%C3%A9?q=a+b&r=%C3%A9%7C%5Bx%5D",
        "/50%/x%7e?p=50%&q=%zz%2f": b"/50%25/x~?p=50%25&q=%25zz/",
        "/a|b{c}/./d?q=^`": b"/a%7Cb%7Bc%7D/d?q=%5E%60",
    }
    with http_h2_servers.HypercornH2C() as srv:
        async with AsyncPerfClient(http2_hosts=[f"127.0.0.1:{srv.port}"]) as client:
            for suffix in cases:
                r = await client.get(f"{srv.url}{suffix}")
                assert r.http_version == "HTTP/2"
        with PerfClient(http2=True) as sync_client:
            for suffix in cases:
                await asyncio.to_thread(sync_client.get, f"{srv.url}{suffix}")
    assert paths == list(cases.values()) * 2
