"""What a call's URL and params are sent as, on every backend: the query aiohttp (yarl) would build from
``params`` (``encode_params`` / ``with_params``), the request-target plain aiohttp sends for a URL the
caller built (``wire_url``), and the Basic credentials it sends for ``user:password@`` (``url_credentials``).
"""

from __future__ import annotations

import base64
import math
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias
from urllib.parse import quote_plus

__all__ = [
    "Credentialed",
    "ParamValue",
    "Params",
    "encode_params",
    "url_credentials",
    "wire_known",
    "wire_new",
    "wire_url",
    "with_params",
]


#: One query value: a str as it is, an int or a float as ``str(value)``; any other exact integer
#: (``numbers.Integral``, numpy's int64: ``operator.index``) as the int. Other numbers (numpy's float32,
#: Decimal) are refused: aiohttp (yarl) would send them truncated, ``int(value)``.
ParamValue: TypeAlias = str | int | float
#: Query parameters: a mapping of names to a value or a list / tuple of values (a repeated key), or a
#: sequence of (name, value) pairs. Appended to the URL's own query, as aiohttp does, on every backend
#: (``with_params``). bool and None are refused (TypeError naming the key, before any try): a query has no
#: one spelling for them (aiohttp refuses them; httpx sent "true" and an empty value).
Params: TypeAlias = Mapping[str, ParamValue | Sequence[ParamValue]] | Sequence[tuple[str, ParamValue]]

# yarl's query quoting (aiohttp's): space as "+", these sub-delimiters and "/:?@" left as they are, so the
# query aiohttp sent for ``params`` is byte for byte what every backend sends now (httpx leaves it as is).
_QUERY_SAFE = "!$'()*,/:?@"
_plain = re.compile(r"[A-Za-z0-9_.~!$'()*,/:?@-]*").fullmatch  # needs no quoting (most names and values)


def _quote(text: str) -> str:
    return text if _plain(text) else quote_plus(text, safe=_QUERY_SAFE)


def _query_value(key: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        raise TypeError(
            f"query parameter {key!r} is {value!r}: bool and None have no one spelling in a query string; "
            "pass a str ('true', '1', '') or leave the key out"
        )
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):  # numpy's float64 too (a float subclass)
        if not math.isfinite(value):
            raise TypeError(f"query parameter {key!r} is {value!r}: not a finite number")
        return str(float(value))
    index = getattr(type(value), "__index__", None)
    if index is not None:  # any exact integer (numbers.Integral: numpy's int64, ...), duck-typed
        try:
            return str(operator.index(value))  # type: ignore[arg-type]
        except TypeError:  # numpy's bool has __index__ and refuses it: a bool, refused above
            raise TypeError(
                f"query parameter {key!r} is {value!r}: bool has no one spelling in a query string; "
                "pass a str ('true', '1', '') or leave the key out"
            ) from None
    raise TypeError(
        f"query parameter {key!r}: expected str, int or float, got {type(value).__name__} "
        "(convert it yourself, e.g. str(v) or float(v): aiohttp sends int(v) for such a value, "
        "truncating a float32 0.7 or a Decimal to 0)"
    )


def encode_params(params: Params | str) -> str:
    """``params`` as an encoded query string (no "?"): pairs in the order given, a list / tuple value as
    the key repeated, keys and values quoted as aiohttp (yarl) quotes them. A str is taken as already
    encoded. Raises TypeError for a value that isn't str, int or float."""
    if isinstance(params, str):
        return params.lstrip("?")
    items = params.items() if params.__class__ is dict or isinstance(params, Mapping) else params
    parts: list[str] = []
    value: Any  # checked below by exact class, which mypy doesn't narrow on
    for item in items:
        try:
            key, value = item
        except (TypeError, ValueError):
            raise TypeError(f"params: expected (name, value) pairs, got {item!r}") from None
        if key.__class__ is not str and not isinstance(key, str):
            raise TypeError(f"query parameter names are str, got {key!r}")
        cls = value.__class__
        if cls is str:  # the common cases first, without a call
            parts.append(f"{_quote(key)}={_quote(value)}")
        elif cls is int:
            parts.append(f"{_quote(key)}={value}")
        elif cls is list or cls is tuple or isinstance(value, (list, tuple)):
            name = _quote(key)
            for one in value:
                parts.append(f"{name}={_quote(_query_value(key, one))}")
        else:
            parts.append(f"{_quote(key)}={_quote(_query_value(key, value))}")
    return "&".join(parts)


def with_params(url: str, params: Params | str | None) -> str:
    """``url`` with ``params`` appended to its own query (``?a=1`` + ``{"b": 2}`` -> ``?a=1&b=2``), as
    aiohttp merges them; the one reading of ``params`` every backend sends (and the cache keys on)."""
    if params is None:
        return url
    query = encode_params(params)
    if not query:
        return url
    url, hash_, fragment = url.partition("#")
    if "?" not in url:
        url += "?"
    elif not url.endswith(("?", "&")):
        url += "&"
    return url + query + hash_ + fragment


# A URL every backend already sends as aiohttp does, left as it is: http(s), a plain host (no userinfo, IPv6
# or IDNA), a path and query of characters yarl leaves as they are (unreserved, sub-delimiters, ":@/", and
# "?" in the query) and of %XX escapes it keeps (upper-case hex, of a byte it would not decode: a control,
# space, '"#%+<>[\]^`{|}', DEL, a non-ASCII byte; "/?" in the path, "&;=" in the query: what
# encode_params writes), no "#", and, checked apart, no empty "?" (yarl drops it) and no "/." (a dot
# segment, which yarl removes). A test holds it to yarl byte by byte.
_ESC = "[01][0-9A-F]|2[0235B]|3[CE]|5[B-E]|60|7[B-DF]|[89A-F][0-9A-F]"  # %XX of these: kept by yarl
_PATH_CHAR = "[A-Za-z0-9_.~!$&'()*+,;=:@/-]"
_QUERY_CHAR = "[A-Za-z0-9_.~!$&'()*+,;=:@/?-]"
_plain_url = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?"
    rf"(?:/{_PATH_CHAR}*(?:%(?:{_ESC}|2F|3F){_PATH_CHAR}*)*)?"
    rf"(?:\?{_QUERY_CHAR}*(?:%(?:{_ESC}|26|3[BD]){_QUERY_CHAR}*)*)?"
).fullmatch
# First, a character no such URL has (non-ASCII, space, '"#<>[\]^`{|}', a control): found at once, where a
# failing fullmatch above backtracks through every "*" (~10x the time).
_unplain_char = re.compile(r"[^A-Za-z0-9_.~!$&'()*+,;=:@/?%-]").search
# URL -> what it is sent as: looked up first on every call, a dict hit (bench_http_layer.py --callgrind
# seq: +0.37k instructions a request, 45.56k -> 45.93k; a regex on every call had cost +3.7k). Bounded: past
# it a new URL is checked each time (~1 µs if plain; one yarl parse, a few µs, if not).
_wire_memo: dict[str, str] = {}
wire_known = _wire_memo.get
_WIRE_MEMO_MAX = 1024


def wire_url(url: str) -> str:
    """``url`` as aiohttp sends it, for every backend to send: yarl's reading (``URL(url)``, what a plain
    ``aiohttp.ClientSession`` does with a str) of the path and query, quoted: a space as %20 in the path and
    "+" in the query, non-ASCII UTF-8 percent-encoded, ``"<>\\^`{|}[]`` encoded, a stray "%" as %25, %XX
    upper-cased and unreserved ones decoded, dot segments removed, an empty "?" dropped; the host IDNA
    encoded, a default port dropped, the fragment (never sent) left out; ``user:password@`` taken out, for
    ``call_args`` to send as aiohttp does (``url_credentials``). httpx and reqwest take that string
    as it is (httpx would send a space in the query as %20, "|" and "%" raw; reqwest "|" raw), so the server
    sees the same request-target from each; yarl parses it back to itself, so aiohttp sends what it did.
    A plain URL (``_plain_url``, most) is returned as it is, yarl never run; each answer is memoised.

    Raises ValueError, before any try and on every backend, for a URL yarl refuses (a port out of range, a
    broken IPv6 literal, no host, a backslash in the host), as a plain aiohttp session refuses it
    (``InvalidUrlClientError``, a ValueError); httpx and reqwest each failed their own way, or sent it."""
    return wire_known(url) or wire_new(url)


class Credentialed(str):
    """A wire URL whose caller's URL had ``user:password@``: the URL without them, and ``authorization``,
    the Basic header aiohttp sends for them (``url_credentials``)."""

    authorization: str


def wire_new(url: str) -> str:
    if _unplain_char(url) is None and _plain_url(url) is not None and "/." not in url and url[-1] != "?":
        wire = url
    else:
        from yarl import URL

        try:
            parsed = URL(url)
            if parsed.raw_fragment:
                parsed = parsed.with_fragment(None)
            if parsed.raw_user is not None or parsed.raw_password is not None:
                wire = _credentialed(parsed)
            else:
                wire = str(parsed)
        except ValueError as exc:  # yarl's messages name the problem, never the path or query
            raise ValueError(f"invalid URL: {str(exc).removeprefix('Invalid URL: ')}") from None
    if len(_wire_memo) < _WIRE_MEMO_MAX:
        _wire_memo[url] = wire
    return wire


def _credentialed(parsed: Any) -> Credentialed:
    """aiohttp's reading (``strip_auth_from_url``, ``encode_basic_auth``): the decoded user and password,
    latin-1, as Basic; a user with ":" refused (the ValueError aiohttp raises)."""
    user, password = parsed.user or "", parsed.password or ""
    if ":" in user:
        raise ValueError('A ":" is not allowed in login (RFC 7617#section-2)')
    try:
        creds = f"{user}:{password}".encode("latin-1")
    except UnicodeEncodeError:  # aiohttp raises it, with the character: not that part of a secret here
        raise ValueError("its user or password has a character latin-1 can't encode") from None
    wire = Credentialed(parsed.with_user(None))
    wire.authorization = "Basic " + base64.b64encode(creds).decode("ascii")
    return wire


def url_credentials(url: str, headers: Mapping[str, str] | None) -> Mapping[str, str]:
    """``headers`` with the Authorization aiohttp sends for a URL's ``user:password@`` (Basic, from the
    decoded user and password): every backend sends it, and the URL without them (httpx's transports sent
    none; reqwest did). Raises aiohttp's ValueError when ``headers`` have an Authorization of their own."""
    if headers and any(k.lower() == "authorization" for k in headers):
        raise ValueError(
            "Cannot combine AUTHORIZATION header with AUTH argument or credentials encoded in URL"
        )
    out = dict(headers) if headers else {}
    out["Authorization"] = url.authorization  # type: ignore[attr-defined]
    return out
