"""The typed signatures of the layered verbs (generate, chat, embed, embeddings), written once for both
clients.

Each verb is the official one's signature (ollama-python's ``Client`` overloads: ``stream=False`` gives a
reply, ``stream=True`` an iterator) plus the layer's keywords (``profile``, ``cache``). The protocols are
generic over what a call returns, so ``OptimizedOllama`` declares ``Generate[GenerateResponse,
Iterator[GenerateResponse]]`` and ``AsyncOptimizedOllama`` the same wrapped in coroutines: a misspelled
keyword to either fails type checking (tests/typing). At run time the verbs take ``*args, **kwargs`` and
hand them on as they are (see ``official_signature``), so nothing here is imported outside type checking.
The payload types are ollama-python's with ``object`` where it writes ``Any`` (options and messages as
``Mapping[str, object]``, a JSON schema ``format`` as a mapping, tools as any callable): every value its
types accept still type-checks, since a mapping's values are read only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol, TypeVar, overload

from ollama import Image, Message, Options, Tool

__all__ = ["Chat", "Embed", "Embeddings", "Generate"]

_R = TypeVar("_R", covariant=True)
_S = TypeVar("_S", covariant=True)

_Format = Literal["", "json"] | Mapping[str, object] | None  # ollama-python: pydantic's JsonSchemaValue
_Options = Mapping[str, object] | Options | None


class Generate(Protocol[_R, _S]):
    """``generate``: ``_R`` for a reply, ``_S`` for a stream."""

    @overload
    def __call__(
        self,
        model: str = "",
        prompt: str = "",
        suffix: str = "",
        *,
        system: str = "",
        template: str = "",
        context: Sequence[int] | None = None,
        stream: Literal[False] = False,
        think: bool | str | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        raw: bool = False,
        format: _Format = None,
        images: Sequence[str | bytes | Image] | None = None,
        options: _Options = None,
        keep_alive: float | str | None = None,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        profile: str | None = None,
        cache: bool | None = None,
    ) -> _R: ...

    @overload
    def __call__(
        self,
        model: str = "",
        prompt: str = "",
        suffix: str = "",
        *,
        system: str = "",
        template: str = "",
        context: Sequence[int] | None = None,
        stream: Literal[True] = True,
        think: bool | str | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        raw: bool = False,
        format: _Format = None,
        images: Sequence[str | bytes | Image] | None = None,
        options: _Options = None,
        keep_alive: float | str | None = None,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        profile: str | None = None,
        cache: bool | None = None,
    ) -> _S: ...


class Chat(Protocol[_R, _S]):
    """``chat``: ``_R`` for a reply, ``_S`` for a stream."""

    @overload
    def __call__(
        self,
        model: str = "",
        messages: Sequence[Mapping[str, object] | Message] | None = None,
        *,
        tools: Sequence[Mapping[str, object] | Tool | Callable[..., object]] | None = None,
        stream: Literal[False] = False,
        think: bool | str | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        format: _Format = None,
        options: _Options = None,
        keep_alive: float | str | None = None,
        profile: str | None = None,
        cache: bool | None = None,
    ) -> _R: ...

    @overload
    def __call__(
        self,
        model: str = "",
        messages: Sequence[Mapping[str, object] | Message] | None = None,
        *,
        tools: Sequence[Mapping[str, object] | Tool | Callable[..., object]] | None = None,
        stream: Literal[True] = True,
        think: bool | str | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        format: _Format = None,
        options: _Options = None,
        keep_alive: float | str | None = None,
        profile: str | None = None,
        cache: bool | None = None,
    ) -> _S: ...


class Embed(Protocol[_R]):
    """``embed``, cached per input."""

    def __call__(
        self,
        model: str = "",
        input: str | Sequence[str] = "",
        truncate: bool | None = None,
        options: _Options = None,
        keep_alive: float | str | None = None,
        dimensions: int | None = None,
        *,
        cache: bool | None = None,
    ) -> _R: ...


class Embeddings(Protocol[_R]):
    """The deprecated single-prompt ``embeddings``, cached whole."""

    def __call__(
        self,
        model: str = "",
        prompt: str | None = None,
        options: _Options = None,
        keep_alive: float | str | None = None,
        *,
        cache: bool | None = None,
    ) -> _R: ...
