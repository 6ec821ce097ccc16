"""The I/O-free core both clients share: per-origin state and the retry decisions of one logical call.

The loop of a logical call is written once, as a generator (``steps``, sans-I/O like the Ollama
clients' flows): it yields an *effect* wherever I/O is due (``None``: run one attempt and send back its
response or the ``Failure`` it raised; a float: sleep that long; a stream response: close it) and returns
the call's answer. PerfClient and AsyncPerfClient only perform the effects, one plainly, one with
``await``, so the retry rules, the budget, the breaker and the call's metrics behave identically in both.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from infra.config.sections.http import RETRY_STATUSES, HttpConfig, RetryConfig
from infra.http._breaker import FAILURE, NEUTRAL, NORMAL, REJECT, SUCCESS, CircuitBreaker
from infra.http._budget import RetryBudget
from infra.http._errors import (
    Attempt,
    CircuitOpenError,
    DeadlineExceeded,
    HTTPError,
    PoolTimeout,
    RetryAfterTooLong,
    RetryBudgetExhausted,
    TransportError,
)
from infra.http._lease import AsyncGate
from infra.http._metrics import HostMetrics, NullMetrics
from infra.http._retry_after import parse_retry_after

if TYPE_CHECKING:
    from infra.http._response import Response

__all__ = [
    "BREAKER_FAILURE_STATUSES",
    "CLOSED",
    "CONNECT",
    "DEADLINE",
    "FIRST_BYTE",
    "GOAWAY",
    "POOL",
    "READ",
    "Call",
    "Failure",
    "HostState",
    "breaker_outcome",
    "steps",
]

#: Statuses that count as an upstream failure for the breaker. 429 is deliberately absent: the server is
#: healthy and asked us to slow down, which backoff handles; opening the breaker would shed good traffic.
BREAKER_FAILURE_STATUSES: frozenset[int] = frozenset({500, 502, 503, 504})

# Error kinds a client maps backend exceptions to.
CONNECT = "connect"  # nothing reached the server: always safe to retry
READ = "read"  # the request may have been processed: retry only idempotent requests
FIRST_BYTE = "first_byte"  # no response headers within TimeoutConfig.first_byte: a read failure
DEADLINE = "deadline"  # the call's one deadline ran out: final
POOL = "pool"  # no connection slot within TimeoutConfig.pool: final
GOAWAY = "goaway"  # an HTTP/2 GOAWAY with last_stream_id 0: the server processed no stream, so any method
# may be resent; and no sign of trouble (servers rotate connections on purpose): neutral for the breaker
CLOSED = "closed"  # the connection was closed under the request (graceful GOAWAY, write to a closed
# socket): the request may have run, so idempotent-only retry; neutral for the breaker (rotation, not illness)

_ALWAYS_RETRYABLE = frozenset({CONNECT, GOAWAY})
_IDEMPOTENT_RETRYABLE = frozenset({READ, FIRST_BYTE, CLOSED})
# Not evidence of a sick upstream: our own deadline, and connections a server rotates on purpose.
_BREAKER_NEUTRAL = frozenset({DEADLINE, GOAWAY, CLOSED})
# Retries that take no retry-budget token: the budget caps the extra load retries put on a sick upstream,
# and a rotated connection is not one (as for the breaker). With ~100 streams multiplexed on a connection,
# one rotation fails dozens at once (httpcore fails even streams the server had answered): on the
# budget's 0.2 a request that lost a quarter of 1,000 GETs to RetryBudgetExhausted. Each call's retries
# stay bounded by ``retry.attempts``.
_BUDGET_FREE = frozenset({GOAWAY, CLOSED})


class Failure(Exception):
    """An attempt failed with ``kind`` (one of the error kinds above); ``cause`` is the backend exception.
    Raised by a client's attempt, caught by its loop, which hands both to ``Call.on_error``."""

    def __init__(self, kind: str, cause: BaseException) -> None:
        self.kind = kind
        self.cause = cause


def breaker_outcome(status: int) -> int:
    """How a response status counts for the breaker: 5xx failures, 429 neutral, the rest success."""
    if status in BREAKER_FAILURE_STATUSES:
        return FAILURE
    if status == 429:
        return NEUTRAL
    return SUCCESS


class HostState:
    """Everything kept per origin: breaker, retry budget, metric children, and the client's slot limiters:
    ``slots`` this origin's own, ``shared`` the one its calls also take a slot of (the client's global
    gate; an HTTP/2 origin's own unbounded one, see ``host_gates``); ``alpn`` a TLS HTTP/2 origin's version
    watch (``_alpn.Alpn``), else None."""

    __slots__ = ("alpn", "breaker", "budget", "metrics", "origin", "shared", "slots")

    def __init__(
        self, origin: str, settings: HttpConfig, slots: Any = None, shared: Any = None, alpn: Any = None
    ) -> None:
        self.origin = origin
        self.shared = shared
        self.alpn = alpn
        self.metrics: NullMetrics = HostMetrics(origin) if settings.metrics else NullMetrics()
        # A client on one event loop (its slots an AsyncGate) records outcomes from that loop's thread only.
        threaded = not isinstance(slots, AsyncGate)
        self.breaker = CircuitBreaker(
            settings.breaker, on_change=self.metrics.breaker_changed, name=origin, threaded=threaded
        )
        self.budget = RetryBudget(settings.retry_budget)
        self.slots = slots


class Call:
    """Retry state of one logical call. Pure: decisions from outcomes, the clock passed in.

    What it counts is what happened: a retry is counted (``infra_http_retries_total``) when it goes ahead
    after its backoff, not when it is scheduled (a breaker that opens during the sleep cancels it, and
    the budget token it took is given back); a call the breaker refuses is counted with ``code="refused"``
    and its history is empty (no try was sent); a cancelled call (or one a caller's error ended) is
    counted with ``code="cancelled"`` (``"error"``) when ``release`` runs.

    The breaker counts logical calls, not attempts: a call asks it once, before its first try, and feeds
    it one outcome when it ends (``_settle``): a failure if it ended on a breaker-failure status (5xx) or a
    transport error, a success if it ended on any other status but 429, neutral otherwise (429, our own
    deadline, a connection the server rotated). So one call can't open the breaker alone, however many
    retries it makes. A breaker that opens while a call is between tries (other calls' failures) stops its
    retries: the call ends with what it has, its last response returned like any failing status, or, if
    its last try got no response, CircuitOpenError.
    """

    __slots__ = (
        "admission",
        "due",
        "failed",
        "history",
        "host",
        "method",
        "pending",
        "policy",
        "retries",
        "retry_ok",
        "settled",
        "started",
    )

    def __init__(
        self,
        policy: RetryConfig,
        host: HostState,
        method: str,
        idempotent: bool | None,
        started: float,
        deposit: bool = True,
    ) -> None:
        self.policy = policy
        self.host = host
        self.method = method
        # idempotent None: the body can be read once (_body.OneShot), so no status or read failure is retried
        self.retry_ok = idempotent is not None and policy.may_retry_request(method, idempotent)
        self.retries = 0
        self.history: list[Attempt] = []
        self.started = started
        self.admission: int | None = None
        self.failed = False  # some try ended in a breaker failure
        self.pending = NEUTRAL  # the breaker outcome of the last try, while a retry is due
        self.settled = False
        self.due: str | None = None  # the reason of a retry scheduled and not yet sent (its token taken)
        if deposit:  # False: the caller made the call's deposit itself (``admitted``)
            budget = host.budget
            if not budget.full:  # full: the deposit would change nothing (RetryBudget.full)
                budget.deposit()

    @classmethod
    def admitted(
        cls,
        policy: RetryConfig,
        host: HostState,
        method: str,
        idempotent: bool | None,
        started: float,
        admission: int,
    ) -> Call:
        """The state of a call begun without one (the async hot path makes a Call only once a call needs
        more than its first try's answer): its deposit made and its admission ``admission`` already."""
        call = cls(policy, host, method, idempotent, started, deposit=False)
        call.admission = admission
        return call

    def admit(self) -> int:
        """Before each try: the first asks the breaker (CircuitOpenError, no I/O done, when it refuses);
        a retry goes under the same admission (after_* already checked the breaker allows it)."""
        admission = self.admission
        if admission is not None:
            return admission
        admission = self.host.breaker.admit()
        if admission == REJECT:
            self.settled = True
            self.host.metrics.outcome(self.method, "refused", _monotonic() - self.started)
            raise self._circuit_open()
        self.admission = admission
        return admission

    def _circuit_open(self) -> CircuitOpenError:
        """The breaker's refusal; its history the tries sent before it (none for a refused call)."""
        breaker = self.host.breaker
        error: CircuitOpenError = self._final(
            CircuitOpenError,
            f"circuit breaker is {breaker.state}; retry in {breaker.retry_in():.2f}s",
            retry_in=breaker.retry_in(),
        )
        return error

    def _settle(self, outcome: int) -> None:
        """Feed the breaker this call's one outcome (once; the last try's, a failure if any try failed
        and the call did not end in a success)."""
        if self.settled:
            return
        self.settled = True
        if outcome != SUCCESS and self.failed:
            outcome = FAILURE
        self.host.breaker.record(outcome, NORMAL if self.admission is None else self.admission)

    def release(self) -> None:
        """The call ended without an outcome (cancelled, a caller's error): free a probe slot it held, give
        back the budget token of a retry it had not sent, and count it (``code="cancelled"`` for a
        cancellation or other BaseException, ``"error"`` for an Exception). Called from the ``except``
        block of the loop (it reads the exception being handled)."""
        if not self.settled:
            self.settled = True
            if self.admission is not None:
                self.host.breaker.release(self.admission)
            self._cancel_due()
            exc = sys.exc_info()[1]
            code = "error" if isinstance(exc, Exception) else "cancelled"
            self.host.metrics.outcome(self.method, code, _monotonic() - self.started)

    def _cancel_due(self) -> None:
        """A scheduled retry will not be sent: give its budget token back (_BUDGET_FREE retries took none)."""
        due, self.due = self.due, None
        if due is not None and due not in _BUDGET_FREE:
            self.host.budget.give_back()

    def after_sleep(self, last: Any) -> Any:
        """After the backoff sleep, before the retry: None to send it. A breaker opened meanwhile (by other
        calls) ends the call instead: it returns ``last`` (the last try's response, its history set), or,
        when there is none to hand back (a failed try, a closed stream), raises CircuitOpenError."""
        if self.host.breaker.allows_retry(self.admission):
            due, self.due = self.due, None
            if due is not None:
                self.host.metrics.retry(due)  # counted now that it is sent, not when it was scheduled
            return None
        self._cancel_due()
        self._settle(self.pending)
        if last is not None:
            last.history = tuple(self.history)
            return last
        raise self._circuit_open()

    # -- the loop's three steps, with the call's metrics: what both clients run after each attempt ---------

    def on_error(
        self,
        kind: str,
        cause: BaseException,
        t0: float,
        now: float,
        deadline_at: float | None,
        admission: int,
    ) -> float:
        """An attempt failed: the sleep before the next, or raise the final error (its duration recorded)."""
        try:
            return self.after_error(kind, cause, now - t0, now, deadline_at, admission)
        except HTTPError:
            self.host.metrics.duration(self.method, None, now - self.started)
            raise

    def on_response(
        self,
        response: Response,
        t0: float,
        now: float,
        deadline_at: float | None,
        admission: int,
        stream: bool,
    ) -> float | None:
        """An attempt got a response: None when it is the call's answer (history set, its duration, or for
        a stream the time to first byte, recorded), else the sleep before retrying. The caller closes a
        streamed response it won't return (on a raise too)."""
        status = response.status
        if status in RETRY_STATUSES:
            try:
                delay = self._after_retry_status(response, status, now - t0, now, deadline_at)
            except HTTPError:
                self.host.metrics.duration(self.method, status, now - self.started)
                raise
            if delay is not None:
                return delay
        else:  # the call's answer (the common case, so _settle is inlined: admitted, not yet settled)
            if self.history:
                self.history.append(Attempt(len(self.history) + 1, status, None, now - t0))
            self.settled = True
            self.host.breaker.record(
                FAILURE if status in BREAKER_FAILURE_STATUSES else SUCCESS,
                NORMAL if self.admission is None else self.admission,
            )
        if self.history:
            response.history = tuple(self.history)
        if stream:
            self.host.metrics.ttfb(self.method, now - self.started)
        else:
            self.host.metrics.duration(self.method, status, now - self.started)
        return None

    def on_wake(self, answered: Response | None, now: float) -> Response | None:
        """After the sleep: None to try again, or the call's answer when the breaker opened meanwhile
        (``after_sleep``), its duration recorded either way the call ends."""
        status = answered.status if answered is not None else None
        try:
            last: Response | None = self.after_sleep(answered)
        except HTTPError:
            self.host.metrics.duration(self.method, status, now - self.started)
            raise
        if last is not None:
            self.host.metrics.duration(self.method, last.status, now - self.started)
        return last

    def _final(self, exc_type: type[Any], message: str, **kw: Any) -> Any:
        return exc_type(
            message, origin=self.host.origin, method=self.method, history=tuple(self.history), **kw
        )

    def after_error(
        self,
        kind: str,
        exc: BaseException,
        elapsed: float,
        now: float,
        deadline_at: float | None,
        admission: int,
    ) -> float:
        """A try failed with ``kind``: the sleep before the next try, or raise the final error."""
        self.history.append(Attempt(len(self.history) + 1, None, kind, elapsed))
        outcome = NEUTRAL if kind in _BREAKER_NEUTRAL else FAILURE
        if kind == POOL:
            outcome = NEUTRAL  # nothing reached the upstream: our own queue was full
        elif outcome == FAILURE:
            self.failed = True
        try:
            delay = self._retry_after_error(kind, exc, now, deadline_at)
        except BaseException:
            self._settle(outcome)
            raise
        self.pending = outcome
        return delay

    def _retry_after_error(
        self, kind: str, exc: BaseException, now: float, deadline_at: float | None
    ) -> float:
        detail = f"{type(exc).__name__}" + (f": {exc}" if kind != DEADLINE and _safe(exc) else "")
        if kind == DEADLINE:
            raise self._final(DeadlineExceeded, f"deadline exceeded after {now - self.started:.3f}s") from exc
        if kind == POOL:
            raise self._final(PoolTimeout, f"no connection slot in time ({detail})") from exc
        retryable = kind in _ALWAYS_RETRYABLE or (self.retry_ok and kind in _IDEMPOTENT_RETRYABLE)
        if not retryable or self.retries >= self.policy.attempts:
            raise self._final(TransportError, f"{kind} error ({detail})", kind=kind) from exc
        delay = self.policy.backoff_for(self.retries + 1)
        if deadline_at is not None and now + delay >= deadline_at:
            raise self._final(
                DeadlineExceeded, f"{kind} error and no time left to retry before the deadline ({detail})"
            ) from exc
        if not self.host.breaker.allows_retry(self.admission):
            raise self._circuit_open() from exc
        if kind not in _BUDGET_FREE and not self.host.budget.try_withdraw():
            self.host.metrics.budget_denied()
            raise self._final(
                RetryBudgetExhausted, f"{kind} error; retry budget exhausted ({detail})"
            ) from exc
        self.retries += 1
        self.due = kind  # counted by after_sleep when it is sent
        return delay

    def _after_retry_status(
        self, response: Response, status: int, elapsed: float, now: float, deadline_at: float | None
    ) -> float | None:
        """A try got a status that may be retried: the sleep before the next try, or None to hand it to the
        caller. Raises RetryAfterTooLong when the server asks to wait past the deadline or the policy's cap.
        """
        outcome = FAILURE if status in BREAKER_FAILURE_STATUSES else NEUTRAL if status == 429 else SUCCESS
        if outcome == FAILURE:
            self.failed = True
        try:
            delay = self._retry_after_response(response, status, elapsed, now, deadline_at)
        except BaseException:
            self._settle(outcome)
            raise
        if delay is None:
            self._settle(outcome)
        else:
            self.pending = outcome
        return delay

    def _retry_after_response(
        self, response: Response, status: int, elapsed: float, now: float, deadline_at: float | None
    ) -> float | None:
        policy = self.policy
        retry_after = parse_retry_after(response.headers.get) if policy.respect_retry_after else None
        self.history.append(Attempt(len(self.history) + 1, status, None, elapsed, retry_after))
        if not self.retry_ok or self.retries >= policy.attempts:
            return None
        if retry_after is not None:
            if retry_after > policy.max_retry_after or (
                deadline_at is not None and now + retry_after >= deadline_at
            ):
                limit = "the deadline" if retry_after <= policy.max_retry_after else "max_retry_after"
                raise self._final(
                    RetryAfterTooLong,
                    f"status {status}: server asked to wait {retry_after:.3f}s, past {limit}",
                    retry_after=retry_after,
                    response=response,
                )
            # Retry-After is a floor, not an appointment: a little jitter (up to ``jitter`` x this retry's
            # backoff step) keeps every client told "0" or the same date from coming back in lockstep,
            # which also broke aliasing with periodic failures in our flaky-route benchmark.
            delay = retry_after + policy.retry_after_jitter(self.retries + 1)
            if deadline_at is not None and now + delay >= deadline_at:
                delay = retry_after  # the jitter must not push the retry past the deadline
        else:
            delay = policy.backoff_for(self.retries + 1)
            if deadline_at is not None and now + delay >= deadline_at:
                return None  # no time for another try: the caller gets this response
        if not self.host.breaker.allows_retry(self.admission):
            return None  # opened meanwhile (other calls): this response is the call's answer
        if not self.host.budget.try_withdraw():
            self.host.metrics.budget_denied()
            return None
        self.retries += 1
        self.due = str(status)  # counted by after_sleep when it is sent
        return delay


#: What ``steps`` yields: None (an attempt is due), a float (sleep), a stream response (close it).
Steps = Generator[Any, Any, Any]
_monotonic = time.monotonic


def steps(call: Call, deadline_at: float | None, stream: bool, drop_deadline: bool) -> Steps:
    """The loop of one logical call: every decision is ``call``'s; what it yields is the I/O its edge
    performs (see the module's docstring). ``drop_deadline``: a stream handed back runs on its idle
    timeout alone (the configured total bounds it up to its headers; LLM / TTS streams outlive any
    sensible total), where an explicit ``deadline=`` bounds the whole stream."""
    while True:
        admission = call.admit()
        t0 = _monotonic()
        outcome = yield None
        answered = None  # the response to hand back if the breaker stops the retry
        delay: float | None
        if outcome.__class__ is Failure:
            delay = call.on_error(outcome.kind, outcome.cause, t0, _monotonic(), deadline_at, admission)
        else:
            try:
                delay = call.on_response(outcome, t0, _monotonic(), deadline_at, admission, stream)
            except BaseException:
                if stream:
                    yield outcome  # closed by the edge before the error goes on
                raise
            if delay is None:
                if stream and drop_deadline:
                    outcome.drop_deadline()
                return outcome
            if stream:
                yield outcome
            else:
                answered = outcome
        if delay:
            yield float(delay)
        last = call.on_wake(answered, _monotonic())
        if last is not None:  # the breaker opened meanwhile: this response is the call's answer
            return last


def _safe(exc: BaseException) -> bool:
    """Whether an exception's text may go into our message: backend messages can echo a full URL."""
    text = str(exc)
    return "?" not in text and "@" not in text and "://" not in text and len(text) < 200
