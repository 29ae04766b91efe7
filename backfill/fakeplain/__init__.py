"""A fake of Plain's GraphQL API for rehearsals and tests.

``FakePlain`` serves the schema subset in ``backfill/schema`` over real HTTP on 127.0.0.1,
validates every request against it with graphql-core, and mirrors what the backfill depends
on: bearer-key auth (401), per-workspace fixed-window rate limits with Plain's
``x-ratelimit-*`` headers (429), Apollo-style 400s for bad documents and variables,
permission checks, ``MutationError`` results for the rules the schema cannot express
(exactly one customer identifier, component limits, unknown customers, duplicate event
``externalId``), and injectable faults (500s, dropped connections, events applied but
never answered, latency, outages). It records what it received so tests can assert that
each event was created exactly once.

A document may hold several aliased mutations; they run in order and each alias gets its
own output. Whether Plain accepts such documents, and how its rate limit counts them, is
undocumented, so both are settings: ``max_mutations`` refuses documents with more
top-level mutations, and ``count_mutations`` charges one rate-limit unit per mutation.

It depends only on the standard library and graphql-core, and shares no code with the
client side of the package, so the two cannot agree on a mistake.

Example::

    with FakePlain(rate_limit=5) as fake:
        response = httpx.post(
            fake.url,
            json={"query": "{ myWorkspace { id } }"},
            headers={"Authorization": "Bearer test-key"},
        )
        response.json()  # {"data": {"myWorkspace": {"id": "w_01FAKEWORKSPACE0000000000"}}}
        fake.stats().requests  # 1

Admin endpoints (no auth, no rate limit), for a server running in another process:
``GET /_fake/stats``, ``GET /_fake/events``, ``POST /_fake/reset`` and
``POST /_fake/faults`` (a JSON object of ``Faults`` fields; ``outage_s`` starts an outage
of that many seconds).

The modules: ``server`` (``FakePlain``: settings, lifecycle, the answer to a request),
``handler`` (HTTP), ``documents`` (schema, parsing, validation), ``ratelimit``,
``faults``, ``keys`` (API keys and permissions), ``rules`` (what Plain accepts beyond
the schema), ``store`` (the in-memory Plain), ``stats`` and ``ids``.
"""

from backfill.fakeplain.faults import Faults
from backfill.fakeplain.keys import ALL_PERMISSIONS, ApiKey, parse_api_key
from backfill.fakeplain.server import FakePlain, serve
from backfill.fakeplain.stats import Stats

__all__ = ["ALL_PERMISSIONS", "ApiKey", "FakePlain", "Faults", "Stats", "parse_api_key", "serve"]
