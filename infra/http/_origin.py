"""Reduce a URL to its origin (scheme://host:port): the only part of a URL a label, log or key may carry.

Path, query and userinfo are dropped: query strings and ``user:password@`` carry API keys. Results are
memoised for the URL prefixes seen (bounded), since the same few origins come back on every call.
"""

from __future__ import annotations

__all__ = ["origin_of"]

_DEFAULT_PORTS = {"http": "80", "https": "443"}
_memo: dict[str, str] = {}
_MEMO_MAX = 1024


def origin_of(url: str) -> str:
    """``https://user:key@Api.Example.com/v1?k=x`` → ``https://api.example.com:443``.

    Raises ValueError naming the problem for anything but an absolute http(s) URL.
    """
    cut = len(url)
    scheme_end = url.find("://")
    if scheme_end > 0:
        for sep in "/?#":
            i = url.find(sep, scheme_end + 3)
            if i != -1 and i < cut:
                cut = i
    head = url[:cut]
    found = _memo.get(head)
    if found is not None:
        return found
    if scheme_end <= 0:
        raise ValueError("expected an absolute http(s) URL such as http://host:port/path (got no scheme)")
    scheme = url[:scheme_end].lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"unsupported URL scheme {scheme!r}: only http and https are supported")
    authority = head[scheme_end + 3 :].rpartition("@")[2]
    if not authority:
        raise ValueError("URL has no host")
    if authority.startswith("["):  # IPv6 literal
        end = authority.find("]")
        host, rest = authority[: end + 1], authority[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = authority.partition(":")
    if port and not port.isdigit():
        raise ValueError("URL port is not a number")
    if port and int(port) > 65535:  # yarl refuses it (aiohttp: InvalidUrlClientError); httpx wrapped it
        raise ValueError("invalid URL: Port out of range 0-65535")
    origin = f"{scheme}://{host.lower()}:{port or _DEFAULT_PORTS[scheme]}"
    if len(_memo) < _MEMO_MAX:
        _memo[head] = origin
    return origin
