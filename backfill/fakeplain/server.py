"""``FakePlain``: the fake Plain's settings, lifecycle and the answer to each request.

A request meets, in order: an outage, authentication, the rate limit, document checks,
the ``max_mutations`` limit and faults, then runs against the in-memory Plain.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import asdict
from types import TracebackType

from graphql import OperationType, execute_sync
from graphql.utilities import get_operation_ast

from backfill.fakeplain.documents import (
    BadRequest,
    Documents,
    load_schema,
    parse_request,
    root_field_count,
)
from backfill.fakeplain.faults import FaultDraws, Faults, faults_from_json
from backfill.fakeplain.handler import (
    GRAPHQL_PATH,
    Reply,
    Routes,
    Server,
    error_body,
    graphql_error_body,
)
from backfill.fakeplain.keys import DEFAULT_API_KEY, ApiKey
from backfill.fakeplain.ratelimit import DEFAULT_RATE_LIMIT, DEFAULT_WINDOW_S, RateLimit
from backfill.fakeplain.stats import Stats
from backfill.fakeplain.store import Store


class FakePlain:
    """A Plain-compatible GraphQL server on a local port, serving from a daemon thread.

    ``max_mutations``, ``count_mutations`` and ``retry_after_s`` may be changed while it
    serves. ``max_mutations``: a mutation operation with more top-level fields is refused
    as a whole with a 400 ``GRAPHQL_VALIDATION_FAILED``, nothing applied (``None``: no
    limit). ``count_mutations``: each top-level mutation costs one unit of the rate-limit
    budget (a query costs 1), and a request needing more units than remain gets a 429
    with nothing applied; when False every request costs 1. The cost is taken from the
    document before anything else, so a refused document costs its mutations too, and a
    request with more mutations than ``rate_limit`` is never admitted. ``retry_after_s``:
    429s carry a ``Retry-After`` header of that many seconds, rounded up (``None``: none).

    >>> with FakePlain(api_keys={"k": ApiKey()}, rate_limit=5, window_s=1.0) as fake:
    ...     fake.url.endswith("/graphql/v1")
    True
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: Mapping[str, ApiKey] | None = None,
        rate_limit: int = DEFAULT_RATE_LIMIT,
        window_s: float = DEFAULT_WINDOW_S,
        workspace_name: str = "Fake Workspace",
        unknown_customers: Collection[str] = (),
        faults: Faults | None = None,
        max_mutations: int | None = None,
        count_mutations: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        self._rate_limit = RateLimit(rate_limit, window_s)
        _check_max_mutations(max_mutations)
        _check_retry_after(retry_after_s)
        self.faults = faults if faults is not None else Faults()
        self._max_mutations = max_mutations
        self._count_mutations = count_mutations
        self._retry_after_s = retry_after_s
        self._host = host
        self._port = port
        self._api_keys = dict(api_keys) if api_keys is not None else {DEFAULT_API_KEY: ApiKey()}
        self._schema = load_schema()
        self._lock = threading.Lock()
        self._store = Store(workspace_name=workspace_name, unknown_customers=unknown_customers)
        self._documents = Documents(self._schema)
        self._draws = FaultDraws(self.faults)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The GraphQL endpoint, e.g. ``http://127.0.0.1:54321/graphql/v1``."""
        if self._server is None:
            raise RuntimeError("FakePlain is not started; call start() or use it as a context")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{GRAPHQL_PATH}"

    @property
    def max_mutations(self) -> int | None:
        """The most top-level mutations a document may hold, or ``None`` for no limit."""
        with self._lock:
            return self._max_mutations

    @max_mutations.setter
    def max_mutations(self, value: int | None) -> None:
        _check_max_mutations(value)
        with self._lock:
            self._max_mutations = value

    @property
    def count_mutations(self) -> bool:
        """Whether each top-level mutation costs a rate-limit unit (else each request does)."""
        with self._lock:
            return self._count_mutations

    @count_mutations.setter
    def count_mutations(self, value: bool) -> None:
        with self._lock:
            self._count_mutations = value

    @property
    def retry_after_s(self) -> float | None:
        """The ``Retry-After`` seconds sent with 429s, or ``None`` to send no header."""
        with self._lock:
            return self._retry_after_s

    @retry_after_s.setter
    def retry_after_s(self, value: float | None) -> None:
        _check_retry_after(value)
        with self._lock:
            self._retry_after_s = value

    def start(self) -> FakePlain:
        """Bind the port and serve in a daemon thread; return ``self``."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("FakePlain is already started")
            routes = Routes(
                graphql=self._answer_graphql,
                faults=self._set_faults_from_json,
                stats=self.stats,
                reset=self.reset,
            )
            self._server = Server((self._host, self._port), routes)
            # Rate-limit windows are aligned to the moment the server starts serving.
            self._rate_limit.align()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fakeplain",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, hang up open connections and release the port. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.hang_up()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> FakePlain:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stats(self) -> Stats:
        """Return a snapshot of the counters and created events."""
        with self._lock:
            return self._store.counters.snapshot()

    def revoke(self, key: str) -> None:
        """Stop accepting `key` (as when a key is deleted while a job runs)."""
        with self._lock:
            self._api_keys.pop(key, None)

    def reset(self) -> None:
        """Forget counters, events, customers and rate-limit windows; faults stay."""
        with self._lock:
            self._store.reset()
            self._rate_limit.reset()

    # --- request handling, called from handler threads ----------------------------------

    def _answer_graphql(self, authorization: str | None, body: bytes) -> Reply:
        with self._lock:
            counters = self._store.counters
            counters.requests += 1
            faults = self.faults
            now = time.monotonic()
            if now < faults.outage_until:
                counters.unavailable += 1
                return Reply(503, error_body("Service Unavailable", "SERVICE_UNAVAILABLE"))
            key = self._authenticate(authorization)
            if key is None:
                counters.unauthenticated += 1
                return Reply(401, error_body("Authentication required", "UNAUTHENTICATED"))
            try:
                query, variables, operation_name = parse_request(body)
                document = self._documents.get(query)
            except BadRequest as error:
                bad_request: BadRequest | None = error
                document, variables, operation_name = None, None, None
            else:
                bad_request = None
            operation = (
                get_operation_ast(document, operation_name) if document is not None else None
            )
            is_mutation = operation is not None and operation.operation == OperationType.MUTATION
            mutations = (
                root_field_count(document, operation, variables)
                if document is not None and operation is not None and is_mutation
                else 0
            )
            cost = max(1, mutations) if self._count_mutations else 1
            admitted, headers = self._rate_limit.admit(key.workspace_id, now, cost, counters)
            if not admitted:
                counters.rate_limited += 1
                if self._retry_after_s is not None:
                    headers["Retry-After"] = str(math.ceil(self._retry_after_s))
                body_429 = error_body("Too Many Requests - Rate limit exceeded", "RATE_LIMITED")
                return Reply(429, body_429, headers)
            if bad_request is not None:
                return Reply(400, error_body(str(bad_request), bad_request.code), headers)
            if document is None or operation is None:
                message = "Could not determine which operation to run; set operationName."
                body_400 = error_body(message, "OPERATION_RESOLUTION_FAILURE")
                return Reply(400, body_400, headers)
            if is_mutation:
                counters.max_mutations_in_request = max(
                    counters.max_mutations_in_request, mutations
                )
            limit = self._max_mutations
            if is_mutation and limit is not None and mutations > limit:
                counters.refused_documents += 1
                message = (
                    "Query complexity limit exceeded: the operation has "
                    f"{mutations} top-level mutations, at most {limit} are allowed"
                )
                return Reply(400, error_body(message, "GRAPHQL_VALIDATION_FAILED"), headers)
            fault = self._draws.fault(faults) if is_mutation else ""
            delay_s = self._draws.latency_s(faults)
            result = execute_sync(
                self._schema,
                document,
                root_value=self._store.root(key, apply=fault not in ("error_500", "drop")),
                variable_values=variables,
                operation_name=operation_name,
            )
            if fault == "error_500":
                counters.errors_500 += 1
                body_500 = error_body("Internal server error", "INTERNAL_SERVER_ERROR")
                return Reply(500, body_500, headers, delay_s=delay_s)
            if fault == "drop":
                counters.drops += 1
                return Reply(0, drop=True, delay_s=delay_s)
            request_errors = [error for error in result.errors or () if error.path is None]
            if request_errors:
                body_400 = graphql_error_body(request_errors, "BAD_USER_INPUT")
                return Reply(400, body_400, headers, delay_s=delay_s)
            if fault == "applied_then_drop":
                counters.applied_then_drops += 1
                return Reply(0, drop=True, delay_s=delay_s)
            counters.mutations += mutations
            return Reply(200, result.formatted, headers, delay_s=delay_s)

    def _authenticate(self, authorization: str | None) -> ApiKey | None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self._api_keys.get(token.strip())

    def _set_faults_from_json(self, body: bytes) -> Reply:
        try:
            faults = faults_from_json(body)
        except (ValueError, TypeError) as error:
            return Reply(400, error_body(str(error), "BAD_REQUEST"))
        self.faults = faults
        return Reply(200, asdict(faults))


def _check_max_mutations(value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"max_mutations must be >= 1 or None, got {value}")


def _check_retry_after(value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"retry_after_s must be >= 0 or None, got {value}")


def serve(
    *,
    host: str,
    port: int,
    rate_limit: int,
    window_s: float,
    api_keys: Mapping[str, ApiKey],
    max_mutations: int | None = None,
    count_mutations: bool = False,
    retry_after_s: float | None = None,
) -> None:
    """Run a fake Plain in the foreground until SIGINT or SIGTERM (``backfill fake-plain``).

    Prints one line, ``fake Plain listening on http://HOST:PORT/graphql/v1``, once the
    port is bound, so a parent process can read the URL (useful with ``port=0``).
    """
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop_requested.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        if in_main_thread
        else {}
    )
    try:
        with FakePlain(
            host=host,
            port=port,
            rate_limit=rate_limit,
            window_s=window_s,
            api_keys=api_keys,
            max_mutations=max_mutations,
            count_mutations=count_mutations,
            retry_after_s=retry_after_s,
        ) as fake:
            print(f"fake Plain listening on {fake.url}", flush=True)
            # A timeout keeps the wait responsive to signals on every platform.
            while not stop_requested.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
