"""Customer upserts (`--upsert-customers`): each customer of the job is upserted once,
before its first event, and never again once the ledger holds it as created."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from backfill.errors import PlainError
from backfill.models import CustomerRecord, Event, Ledger, Outcome, Status
from backfill.sender import Sender

#: Upsert results kept in memory per run before finished ones are dropped (the ledger keeps all).
CUSTOMER_CACHE: Final = 100_000


class Upserts:
    """One run's customer upserts: concurrent events of one customer wait for one upsert."""

    def __init__(
        self,
        ledger: Ledger,
        run_id: str,
        *,
        enabled: bool,
        stop: Callable[[PlainError], object],
    ) -> None:
        self._ledger, self._run_id, self.enabled, self._stop = ledger, run_id, enabled, stop
        self._pending: dict[str, asyncio.Future[Outcome | None]] = {}
        #: Customers this run created or updated (or, in a dry run, would upsert).
        self.upserted = 0

    async def ready(self, event: Event, sender: Sender | None) -> Outcome | None:
        """With --upsert-customers: upsert the event's customer once per run and ledger.

        Returns None when the event may be sent, or the outcome to give it instead
        (`rejected` when the upsert failed, `retryable` when Plain did not answer).
        Concurrent events of one customer wait for the one upsert.
        """
        if not self.enabled or not event.customer:
            return None
        pending = self._pending.get(event.customer)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        if len(self._pending) >= CUSTOMER_CACHE:
            # Finished upserts only; the ledger remembers the rest.
            self._pending = {k: f for k, f in self._pending.items() if not f.done()}
        self._pending[event.customer] = future
        try:
            assert sender is not None
            result = await self._upsert(event, sender)
        except asyncio.CancelledError:
            del self._pending[event.customer]
            future.cancel()
            raise
        except BaseException as exc:
            del self._pending[event.customer]
            future.set_exception(exc)
            future.exception()  # retrieved here: waiters re-raise it themselves
            raise
        future.set_result(result)
        return result

    async def _upsert(self, event: Event, sender: Sender) -> Outcome | None:
        known = self._ledger.customers([event.customer]).get(event.customer)
        if known is not None and known.status == Status.DELIVERED:
            return None
        # A customer refused in an earlier run is tried again: its rows may have changed.
        assert event.upsert is not None
        sent = await sender.upsert(event.customer, event.upsert)
        self._ledger.record_attempts(self._run_id, sent.attempts)
        if sent.stop is not None:
            self._stop(sent.stop)
            return Outcome(
                Status.RETRYABLE, attempts=0, code=sent.stop.code, message=str(sent.stop)
            )
        outcome = sent.outcome
        record = CustomerRecord(
            event.customer, outcome.status, outcome.plain_customer_id, outcome.code, outcome.message
        )
        if outcome.status == Status.DELIVERED:
            self.upserted += 1
            self._ledger.record_customer(self._run_id, record, result=outcome.code)
            return None
        if outcome.status == Status.REJECTED:
            self._ledger.record_customer(self._run_id, record)
            return Outcome(
                Status.REJECTED,
                attempts=0,
                code=outcome.code,
                message=f"the customer upsert failed: {outcome.message}",
            )
        # Plain did not answer: the customer and its events are tried again next run.
        return Outcome(
            Status.RETRYABLE,
            attempts=0,
            code=outcome.code,
            message=f"the customer upsert got no answer: {outcome.message}",
        )

    def would_upsert(self, event: Event) -> str:
        """A dry run's word: the customer upserted before this event, or empty."""
        if not self.enabled or not event.customer:
            return ""
        # The first event of a customer the ledger has not seen upserted goes after it.
        if not self._ledger.first_customer_sighting(event.customer):
            return ""
        known = self._ledger.customers([event.customer]).get(event.customer)
        if known is not None and known.status == Status.DELIVERED:
            return ""
        self.upserted += 1
        return event.customer
