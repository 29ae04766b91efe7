"""Generate a deterministic sample activity export for the backfill tool.

Produces ``data/sample_activity.csv`` (relative to the repository root): a
synthetic export of historical product activity, one row per event, meant to be
backfilled into Plain as customer events. The data is deliberately awkward so
that readers get exercised properly:

* ``event_id`` mixes ``evt_00001234`` ids with purely numeric ids that have
  leading zeros and 19-digit numbers (some above the signed 64-bit range), so
  ids must be read as text;
* ``occurred_at`` mixes ISO 8601 forms (``Z``, fractional seconds, numeric
  offsets) with about 10% naive values (no zone, meant as UTC wall-clock time);
* ``description`` contains commas, double quotes, embedded newlines, emoji, CJK,
  right-to-left text, markdown and a few spreadsheet-formula-like values;
* rows are ordered by time like an export would be, but about 5% are out of
  order.

The file is UTF-8 without a BOM, comma-delimited with a header row, quoted per
RFC 4180 (minimal quoting, ``\\n`` line endings). Only the standard library is
used and the output is fully determined by the fixed seed and ``--rows``.

Run from the repository root::

    python scripts/make_sample_data.py                 # 2400 rows -> data/sample_activity.csv
    python scripts/make_sample_data.py --rows 50000 --out big_sample.csv
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

SEED = 20261127
DEFAULT_ROWS = 2400
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "data" / "sample_activity.csv"

COLUMNS = (
    "event_id",
    "occurred_at",
    "customer_email",
    "customer_name",
    "event_type",
    "plan",
    "amount",
    "currency",
    "url",
    "description",
    "actor",
)

# Instants are drawn from this window; the margins keep every rendered local
# time (offsets span -08:00..+10:00) between 2023-01-01 and 2026-10-31.
START = datetime(2023, 1, 1, 12, 0, tzinfo=UTC)
END = datetime(2026, 10, 30, 12, 0, tzinfo=UTC)

N_CUSTOMERS = 150
MAX_DESCRIPTION = 400

EVENT_WEIGHTS: dict[str, float] = {
    "login": 30.0,
    "api_key_created": 5.0,
    "api_key_revoked": 2.0,
    "plan_upgraded": 3.5,
    "plan_downgraded": 1.5,
    "invoice_paid": 14.0,
    "invoice_failed": 2.5,
    "order_placed": 14.0,
    "incident_opened": 5.0,
    "incident_resolved": 4.5,
    "seat_added": 6.0,
    "export_requested": 3.5,
}
SYSTEM_EVENTS = frozenset({"invoice_paid", "invoice_failed", "incident_resolved"})

PLANS = ("free", "starter", "growth", "scale", "enterprise")
PLAN_PRICES: dict[str, Decimal] = {
    "free": Decimal("0"),
    "starter": Decimal("49"),
    "growth": Decimal("199"),
    "scale": Decimal("799"),
    "enterprise": Decimal("2499"),
}
SEAT_PRICES: dict[str, Decimal] = {
    "free": Decimal("0"),
    "starter": Decimal("8"),
    "growth": Decimal("12.5"),
    "scale": Decimal("19"),
    "enterprise": Decimal("24.75"),
}

DOMAINS = (
    "acme.example",
    "globex.test",
    "initech.example",
    "umbrella-corp.test",
    "hooli.example",
    "piedpiper.test",
    "vandelay.example",
    "wonka-industries.test",
    "stark.example",
    "wayne-enterprises.test",
    "soylent.example",
    "tyrell.test",
    "cyberdyne.example",
    "massive-dynamic.test",
    "oscorp.example",
    "gringotts.test",
    "monsters-inc.example",
    "dunder-mifflin.test",
    "bluth-company.example",
    "sterling-cooper.test",
    "nakatomi.example",
    "aperture-science.test",
    "black-mesa.example",
    "rekall.test",
    "virtucon.example",
    "gekko-partners.test",
    "krusty-krab.example",
    "ollivanders.test",
    "nordlys-analytik.example",
    "cafe-lumiere.test",
    "sakura-logistics.example",
    "zenith-bank.test",
)

# (full name, given name used in prose, email local part)
CURATED_PEOPLE: tuple[tuple[str, str, str], ...] = (
    ("Zoë Müller", "Zoë", "zoë.müller"),
    ("José Álvarez", "José", "jose.alvarez"),
    ("李雷", "李雷", "li.lei"),
    ("O'Brien, Siobhán", "Siobhán", "siobhan.obrien"),
    ("Søren Madsen", "Søren", "søren"),
    ("Björn Åkesson", "Björn", "bjorn.akesson"),
    ("François Dupont", "François", "françois"),
    ("Łukasz Wiśniewski", "Łukasz", "lukasz.wisniewski"),
    ("Ana María Pérez", "Ana María", "Ana.Perez"),
    ("Nguyễn Thị Lan", "Lan", "lan.nguyen"),
    ("Renée Côté", "Renée", "renée.côté"),
    ("İbrahim Yılmaz", "İbrahim", "ibrahim.yilmaz"),
    ("Θεοδώρα Παππά", "Θεοδώρα", "theodora.pappa"),
    ("Дмитрий Соколов", "Дмитрий", "d.sokolov"),
    ("김민준", "민준", "minjun.kim"),
    ("佐藤 花子", "花子", "hanako.sato"),
    ("محمد الفارسي", "محمد", "m.alfarsi"),
    ("Jürgen Groß", "Jürgen", "juergen.gross"),
    ("Åsa Berg", "Åsa", "åsa.berg"),
    ("D'Angelo, Marco", "Marco", "marco.dangelo"),
    ("Wells, Jr., Thomas", "Thomas", "tom.wells"),
    ("Mårten Lindqvist", "Mårten", "marten+plain"),
    ("Chloé Besson", "Chloé", "chloe.besson"),
    ("Oluwaseun Adeyemi", "Seun", "seun"),
    ("Priya Raghunathan", "Priya", "priya.r+billing"),
    ('Siddharth "Sid" Rao', "Sid", "sid.rao"),
    ("Mary-Kate O'Neill", "Mary-Kate", "mary-kate.o'neill"),
    ("Þórunn Guðmundsdóttir", "Þórunn", "thorunn"),
    ("Nuño Ibáñez", "Nuño", "nuno_ibanez"),
    ("Dvořák, Antonín", "Antonín", "antonin.dvorak"),
)

FIRST_NAMES = (
    "Alice", "Ben", "Carla", "David", "Elena", "Farah", "George", "Hannah", "Ivan", "Julia",
    "Kwame", "Laura", "Mateo", "Nina", "Oscar", "Paula", "Quentin", "Rosa", "Samuel", "Tara",
    "Umar", "Vera", "William", "Ximena", "Yusuf", "Zara", "Aiden", "Bea", "Chen", "Dana",
    "Emeka", "Fiona", "Grace", "Hiro", "Isla", "Jonas", "Kira", "Leo", "Maya", "Noah",
)  # fmt: skip
LAST_NAMES = (
    "Anderson", "Bakker", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Hughes",
    "Ito", "Jensen", "Kowalski", "Larsen", "Morales", "Novak", "Okafor", "Patel", "Quinn",
    "Rossi", "Schmidt", "Tanaka", "Ueda", "Varga", "Walsh", "Xu", "Young", "Zimmermann",
    "Baptiste", "Costa", "Dlamini", "Evans", "Friedman", "Gallagher", "Haddad", "Iyer",
)  # fmt: skip

ROLE_MAILBOXES = ("admin", "billing", "it-ops", "finance", "security", "devops")
CITIES = (
    "Berlin, DE", "São Paulo, BR", "Zürich, CH", "Kraków, PL", "Montréal, CA", "東京, JP",
    "Reykjavík, IS", "Austin, US", "Lagos, NG", "Dubai, AE", "Lyon, FR", "Dublin, IE",
    "Melbourne, AU", "Bengaluru, IN", "Ciudad de México, MX", "Oslo, NO",
)  # fmt: skip
BROWSERS = (
    "Chrome 128 on macOS",
    "Firefox 131 on Ubuntu",
    "Safari 17.6 on iOS",
    "Edge 129 on Windows 11",
    "the desktop app (v4.12.0)",
)
SSO_PROVIDERS = ("Okta", "Azure AD", "Google Workspace", "OneLogin", "JumpCloud")
KEY_NAMES = ("ci-deploy", "zapier sync", "data-warehouse", "prod, read-only", "Léa's laptop")
KEY_SCOPES = (
    "read:orders",
    "read:orders, write:webhooks",
    "admin:*",
    "read:invoices, read:customers",
    "write:exports",
)
ITEMS = (
    ("Pro seat pack (5)", Decimal("129.50")),
    ('Sticker sheet 3"x3"', Decimal("0.99")),
    ("Priority support add-on", Decimal("349.00")),
    ("Onboarding workshop", Decimal("1299.50")),
    ("Extra storage, 100 GB", Decimal("24.99")),
    ("SMS credits ×1000", Decimal("12.00")),
    ("Hardware token (YubiKey)", Decimal("49.00")),
    ("Custom domain", Decimal("4.50")),
)
PROMO_CODES = ("WELCOME10", "BLACKFRIDAY", "PARTNER-2024", "ÉTÉ25")
SYMPTOMS = (
    "webhooks delayed by ~15 minutes",
    "500 errors on `/v2/orders`, p95 latency 4.2s",
    "CSV export stuck at 99%",
    "SSO login loop for users on Safari 17",
    "duplicate invoices emailed to customers",
    "dashboard charts empty since 09:00 UTC",
    "API returns 429 even at low volume",
)
ROOT_CAUSES = (
    "expired TLS certificate on the webhook relay",
    "a bad index migration, rolled back",
    "rate limiter misconfigured for EU region",
    'cache key collision ("tenant" vs "tenant_id")',
    "third-party payment provider outage",
)
CUSTOMER_QUOTES = (
    "nothing loads, this is urgent",
    "our Black Friday sale starts in 2 hours",
    "is it just us?",
    "the numbers don't add up, again",
)
TEAMS = ("Support", "Finance", "Data", "Platform", "Sales, EMEA", "R&D")
EXPORT_FORMATS = ("CSV", "JSON", "XLSX", "Parquet")
EXPORT_SUBJECTS = ("all invoices", "audit log", "order history", "user list", "usage metrics")
CARD_LAST4 = ("4242", "0005", "1881", "5100", "0077", "9424", "3220")
DECLINE_CODES = ("card_declined (insufficient_funds)", "expired_card", "do_not_honor")

FOLLOW_UPS = (
    '\nFollow-up: customer replied "thanks, all good".',
    "\n\nInternal note: check with finance before refunding.",
    "\n- step 1: reproduce\n- step 2: patch",
    "\nP.S. ticket #4821 looks related.",
    "\nCustomer asked for a call back tomorrow, 10:00 CET.",
    "\n**Action:** none needed\n_auto-closed_",
)
UNICODE_SUFFIXES = (
    " 🚀",
    " ✅",
    " ⚠️",
    " 🎉🎉",
    " — 谢谢！",
    " (日本語のサポートを希望)",
    " ملاحظة: يرجى إرسال الفاتورة مرة أخرى",
    " Danke schön!",
    " Merci beaucoup, à bientôt.",
    " 고객이 한국어 지원을 요청했습니다.",
)
FORMULA_LIKE = (
    '=HYPERLINK("https://phish.invalid/login","Click here")',
    "=1+2 (customer typed this into the company name field)",
    "=cmd|' /C calc'!A0",
    "+1 555 0100 asked for a call back about this",
    "+44 20 7946 0958 is the new billing contact",
    "-20% loyalty discount applied by account manager",
    "-- migrated from legacy CRM --",
    "@here heads up: this account is on a legal hold",
    "@finance please double-check the VAT number",
    "=SUM(A1:A9)",
)


@dataclass
class Customer:
    name: str
    given: str
    email: str
    domain: str
    currency: str
    card: str
    plan: str
    seats: int
    weight: float
    open_incidents: list[str] = field(default_factory=list)
    api_keys: list[str] = field(default_factory=list)


@dataclass
class Row:
    at: datetime
    values: dict[str, str]


@dataclass
class Counters:
    order: int = 10_000
    invoice: int = 2_000
    incident: int = 300
    key: int = 500
    export: int = 100

    def bump(self, rng: random.Random, name: str) -> int:
        value = getattr(self, name) + rng.randint(1, 37)
        setattr(self, name, value)
        return int(value)


def build_customers(rng: random.Random) -> list[Customer]:
    """Build ``N_CUSTOMERS`` customers with unique addresses."""
    people: list[tuple[str, str, str]] = list(CURATED_PEOPLE)
    patterns: tuple[Callable[[str, str], str], ...] = (
        lambda f, la: f"{f}.{la}",
        lambda f, la: f"{f[0]}.{la}",
        lambda f, la: f"{f}{la[0]}",
        lambda f, la: f"{f}_{la}",
        lambda f, la: f,
    )
    names = {full for full, _, _ in people}
    while len(people) < N_CUSTOMERS:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        if f"{first} {last}" in names:
            continue
        names.add(f"{first} {last}")
        local = rng.choice(patterns)(first.lower(), last.lower())
        people.append((f"{first} {last}", first, local))

    domain_weights = [rng.uniform(0.3, 3.0) for _ in DOMAINS]
    seen: dict[str, int] = {}
    customers: list[Customer] = []
    for full, given, local in people:
        domain = rng.choices(DOMAINS, weights=domain_weights)[0]
        email = f"{local}@{domain}"
        while email.lower() in seen:
            seen[email.lower()] += 1
            email = f"{local}{seen[email.lower()]}@{domain}"
        seen[email.lower()] = 1
        customers.append(
            Customer(
                name=full,
                given=given,
                email=email,
                domain=domain,
                currency=rng.choices(("USD", "EUR", "GBP"), weights=(6, 3, 1.5))[0],
                card=rng.choice(CARD_LAST4),
                plan=rng.choices(PLANS, weights=(4, 4, 3, 1.5, 0.8))[0],
                seats=rng.randint(1, 40),
                weight=rng.lognormvariate(0.0, 1.0),
            )
        )
    return customers


def random_instant(rng: random.Random) -> datetime:
    """A random instant in [START, END], denser towards the end (a growing product)."""
    span = (END - START).total_seconds()
    offset = span * rng.random() ** 0.7
    return START + timedelta(seconds=offset, microseconds=rng.randrange(1_000_000))


def render_timestamp(rng: random.Random, at: datetime) -> str:
    """Render an aware UTC instant in one of several ISO 8601 forms."""
    kind = rng.choices(
        ("z", "z_ms", "plus", "minus", "utc_us", "naive_space", "naive_t"),
        weights=(35, 20, 15, 10, 10, 5, 5),
    )[0]
    if kind == "z":
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "z_ms":
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    if kind == "plus":
        hours, minutes = rng.choice(((1, 0), (2, 0), (5, 30), (9, 0), (10, 0)))
        zone = timezone(timedelta(hours=hours, minutes=minutes))
        return at.astimezone(zone).isoformat(timespec="seconds")
    if kind == "minus":
        hours = rng.choice((3, 4, 5, 8))
        return at.astimezone(timezone(timedelta(hours=-hours))).isoformat(timespec="seconds")
    if kind == "utc_us":
        return at.isoformat(timespec="microseconds")
    separator = " " if kind == "naive_space" else "T"
    return at.replace(tzinfo=None).isoformat(sep=separator, timespec="seconds")


def format_amount(rng: random.Random, value: Decimal) -> str:
    text = f"{value.quantize(Decimal('0.01')):.2f}"
    if text.endswith("0") and rng.random() < 0.25:
        text = text.rstrip("0").rstrip(".")
    return text


def make_event_id(rng: random.Random, used: dict[str, None]) -> str:
    while True:
        roll = rng.random()
        if roll < 0.03:
            candidate = f"{rng.randrange(10**7):08d}"
        elif roll < 0.05:
            candidate = str(rng.randrange(10**18, 10**19))
        else:
            candidate = f"evt_{rng.randrange(10**8):08d}"
        if candidate not in used:
            used[candidate] = None
            return candidate


@dataclass
class Event:
    event_type: str
    text: str
    plan: str = ""
    amount: Decimal | None = None
    path: str = ""


def describe(
    rng: random.Random, event_type: str, cust: Customer, counters: Counters, at: datetime
) -> Event:
    """Apply the event to the customer's state and return its columns."""
    c = cust
    if event_type == "plan_upgraded" and c.plan == PLANS[-1]:
        event_type = "seat_added"
    if event_type == "plan_downgraded" and c.plan == PLANS[0]:
        event_type = "plan_upgraded"
    if event_type == "incident_resolved" and not c.open_incidents:
        event_type = "incident_opened"
    if event_type == "api_key_revoked" and not c.api_keys:
        event_type = "api_key_created"

    if event_type == "login":
        host = rng.randint(1, 254)
        text = rng.choice(
            (
                f"Signed in via SSO ({rng.choice(SSO_PROVIDERS)}) from {rng.choice(CITIES)}",
                f"Login from new device: {rng.choice(BROWSERS)}, IP 203.0.113.{host}",
                f"Password login succeeded after {rng.randint(2, 4)} failed attempts",
                "Signed in with Google; MFA via authenticator app",
                f"{c.given} logged in from {rng.choice(CITIES)} (IP 198.51.100.{host})",
                "Session restored from remember-me cookie",
            )
        )
        return Event(event_type, text, path=f"/users/{c.email.split('@')[0]}/sessions")

    if event_type == "api_key_created":
        key = f"key_{counters.bump(rng, 'key'):05d}"
        c.api_keys.append(key)
        name = rng.choice(KEY_NAMES)
        text = rng.choice(
            (
                f'Created API key `{key}` named "{name}" with scopes {rng.choice(KEY_SCOPES)}',
                f"New API key `{key}` for {name}; expires in 90 days",
                f"**API key created** by {c.given}: `{key}` ({rng.choice(KEY_SCOPES)})",
            )
        )
        return Event(event_type, text, path=f"/settings/api-keys/{key}")

    if event_type == "api_key_revoked":
        key = c.api_keys.pop(rng.randrange(len(c.api_keys)))
        text = rng.choice(
            (
                f"Revoked API key `{key}` after it was committed to a public repo. "
                f"Rotation confirmed by {c.given}.",
                f"API key `{key}` revoked: unused for 180 days",
                f'Key `{key}` revoked, reason: "employee offboarding"',
            )
        )
        return Event(event_type, text, path=f"/settings/api-keys/{key}?tab=audit")

    if event_type in ("plan_upgraded", "plan_downgraded"):
        old_index = PLANS.index(c.plan)
        if event_type == "plan_upgraded":
            new_index = min(len(PLANS) - 1, old_index + rng.choice((1, 1, 1, 2)))
        else:
            new_index = max(0, old_index - rng.choice((1, 1, 2)))
        old, new = c.plan, PLANS[new_index]
        c.plan = new
        amount = PLAN_PRICES[new] + SEAT_PRICES[new] * c.seats
        money = f"{format_amount(rng, amount)} {c.currency}"
        if event_type == "plan_upgraded":
            text = rng.choice(
                (
                    f"Upgraded from {old} to {new} after trial, card ending {c.card}",
                    f"Upgraded {old} → {new}: needed SSO, audit log and more seats",
                    f"**Upgrade** {old} → {new}; prorated charge of {money}",
                    f'{c.given} upgraded to {new}. Quote: "worth every penny, honestly"',
                )
            )
        else:
            text = rng.choice(
                (
                    f'Downgraded from {old} to {new}; reason given: "budget freeze until '
                    f'Q{rng.randint(1, 4)}"',
                    f"Downgraded {old} → {new} at renewal, kept {c.seats} seats",
                    f"Downgrade to {new} requested by {c.given}, effective next billing cycle",
                )
            )
        return Event(event_type, text, plan=new, amount=amount, path="/billing/subscription")

    if event_type in ("invoice_paid", "invoice_failed"):
        invoice = f"in_{at.year}{counters.bump(rng, 'invoice'):06d}"
        if c.plan == "free":
            amount = Decimal(rng.randint(49, 999)) / 100
        else:
            amount = PLAN_PRICES[c.plan] + SEAT_PRICES[c.plan] * c.seats
            if rng.random() < 0.15:
                amount *= 10
        period = at.strftime("%B %Y")
        po_number = rng.randint(1000, 99999)
        if event_type == "invoice_paid":
            text = rng.choice(
                (
                    f"Invoice {invoice} paid by card ending {c.card}",
                    f"Invoice {invoice} for {period} paid via SEPA direct debit",
                    f"Annual invoice {invoice} settled by wire transfer, PO #{po_number}",
                    f"Paid {invoice} ({period}), receipt sent to {c.email}",
                )
            )
        else:
            text = rng.choice(
                (
                    f"Payment for invoice {invoice} failed: {rng.choice(DECLINE_CODES)}. "
                    "Retry scheduled in 3 days",
                    f'Invoice {invoice} failed, bank said "do not honor"; dunning email #2 sent',
                    f"3-D Secure authentication abandoned for invoice {invoice}",
                )
            )
        return Event(event_type, text, amount=amount, path=f"/invoices/{invoice}")

    if event_type == "order_placed":
        order = f"ord_{counters.bump(rng, 'order'):06d}"
        item, unit = rng.choice(ITEMS)
        qty = rng.choices((1, 2, 3, 5, 10, 25), weights=(10, 5, 3, 2, 1, 0.5))[0]
        amount = unit * qty
        city = rng.choice(CITIES)
        text = rng.choice(
            (
                f"Order {order} placed: {qty} × {item}, ships to {city}",
                f"Order {order}: {qty} item(s), promo code `{rng.choice(PROMO_CODES)}` applied",
                f'Order {order} with gift note: "Happy birthday, {c.given}!"',
                f"{c.given} ordered {qty} × “{item}” (billing address in {city})",
            )
        )
        tab = rng.choice(("items", "shipping", "payments"))
        query = f"?tab={tab}&ref=backfill"
        if rng.random() < 0.1:
            query += "&fields=id,status,total"
        return Event(event_type, text, amount=amount, path=f"/orders/{order}{query}")

    if event_type == "incident_opened":
        incident = f"INC-{counters.bump(rng, 'incident'):05d}"
        c.open_incidents.append(incident)
        text = rng.choice(
            (
                f"Incident {incident} opened (sev{rng.randint(1, 4)}): {rng.choice(SYMPTOMS)}",
                f'{c.given} reported "{rng.choice(CUSTOMER_QUOTES)}" — escalated to on-call',
                f"**{incident}** {rng.choice(SYMPTOMS)}; status page updated",
            )
        )
        return Event(event_type, text, path=f"/incidents/{incident}#timeline")

    if event_type == "incident_resolved":
        incident = c.open_incidents.pop(0)
        text = rng.choice(
            (
                f"Incident {incident} resolved after {rng.randint(4, 900)} minutes; "
                f"root cause: {rng.choice(ROOT_CAUSES)}",
                f"Resolved {incident}: rolled back deploy `{rng.getrandbits(28):07x}`, "
                "customer confirmed fix 🎉",
                f"{incident} closed, postmortem due Friday",
            )
        )
        return Event(event_type, text, path=f"/incidents/{incident}?view=postmortem")

    if event_type == "seat_added":
        added = rng.choices((1, 2, 5, 10), weights=(8, 3, 1, 0.5))[0]
        c.seats += added
        other = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        text = rng.choice(
            (
                f"Added {added} seat(s) ({c.seats} total) for the {rng.choice(TEAMS)} team",
                f"Seat added for new hire {other}, role: Admin",
                f"{c.given} invited {other} <{other.split()[0].lower()}@{c.domain}>",
            )
        )
        return Event(event_type, text, path=f"/settings/members?page={1 + c.seats // 25}")

    if event_type == "export_requested":
        export = f"exp_{counters.bump(rng, 'export'):05d}"
        year = at.year - rng.randint(0, 1)
        text = rng.choice(
            (
                f"Requested {rng.choice(EXPORT_FORMATS)} export of {rng.choice(EXPORT_SUBJECTS)} "
                f"for {year}",
                f"GDPR data export requested by {c.given}; due within 30 days",
                f"Export `{export}` ({rng.choice(EXPORT_FORMATS)}) emailed to {c.email}",
            )
        )
        return Event(event_type, text, path=f"/exports/{export}?format=csv&ref=backfill")

    raise ValueError(f"unknown event type: {event_type}")


def decorate(rng: random.Random, text: str) -> str:
    """Add the CSV/unicode edge cases to a description."""
    roll = rng.random()
    if roll < 0.05:
        return ""
    if roll < 0.06:
        return rng.choice(FORMULA_LIKE)
    if rng.random() < 0.06:
        text += ' Customer said "urgent", please prioritise.'
    if rng.random() < 0.10:
        text += rng.choice(UNICODE_SUFFIXES)
    if rng.random() < 0.055:
        text += rng.choice(FOLLOW_UPS)
    return text[:MAX_DESCRIPTION]


def pick_actor(rng: random.Random, event_type: str, cust: Customer, peers: list[str]) -> str:
    if rng.random() < 0.20:
        return ""
    system_share = 0.8 if event_type in SYSTEM_EVENTS else 0.1
    roll = rng.random()
    if roll < system_share:
        return "system"
    if roll < system_share + (1 - system_share) * 0.75:
        return cust.email
    colleagues = [p for p in peers if p != cust.email]
    if colleagues and rng.random() < 0.6:
        return rng.choice(colleagues)
    return f"{rng.choice(ROLE_MAILBOXES)}@{cust.domain}"


def shuffle_slightly(rng: random.Random, rows: list[Row], share: float = 0.05) -> None:
    """Move a few rows a short distance away, as a real export would."""
    for _ in range(round(len(rows) * share)):
        i = rng.randrange(len(rows))
        j = min(len(rows) - 1, max(0, i + rng.choice((-1, 1)) * rng.randint(1, 25)))
        rows.insert(j, rows.pop(i))


def generate(n_rows: int) -> list[dict[str, str]]:
    rng = random.Random(SEED)
    customers = build_customers(rng)
    peers: dict[str, list[str]] = {}
    for cust in customers:
        peers.setdefault(cust.domain, []).append(cust.email)
    weights = [cust.weight for cust in customers]
    event_types = list(EVENT_WEIGHTS)
    event_weights = list(EVENT_WEIGHTS.values())
    counters = Counters()
    used_ids: dict[str, None] = {}

    instants = sorted(random_instant(rng) for _ in range(n_rows))
    # Every customer gets at least one event (when there are enough rows).
    slots = rng.sample(range(n_rows), min(n_rows, len(customers)))
    guaranteed = dict(zip(slots, customers[: len(slots)], strict=True))
    rows: list[Row] = []
    for index, at in enumerate(instants):
        cust = guaranteed.get(index) or rng.choices(customers, weights=weights)[0]
        event = describe(rng, rng.choices(event_types, event_weights)[0], cust, counters, at)
        if event.plan:
            plan = event.plan
        else:
            plan = "" if rng.random() < 0.43 else cust.plan
        amount = "" if event.amount is None else format_amount(rng, event.amount)
        url = ""
        if rng.random() < 0.70:
            url = f"https://admin.{cust.domain}{event.path}"
        values = {
            "event_id": make_event_id(rng, used_ids),
            "occurred_at": render_timestamp(rng, at),
            "customer_email": cust.email,
            "customer_name": cust.name,
            "event_type": event.event_type,
            "plan": plan,
            "amount": amount,
            "currency": cust.currency if amount else "",
            "url": url,
            "description": decorate(rng, event.text),
            "actor": pick_actor(rng, event.event_type, cust, peers[cust.domain]),
        }
        rows.append(Row(at, values))

    shuffle_slightly(rng, rows)
    return [row.values for row in rows]


def write_csv(path: Path, records: Sequence[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(COLUMNS)
        for record in records:
            writer.writerow([record[column] for column in COLUMNS])


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rows", type=positive_int, default=DEFAULT_ROWS, help="data rows (default 2400)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output CSV (default: data/sample_activity.csv in the repository root)",
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    records = generate(args.rows)
    write_csv(out, records)
    shown = out.resolve()
    if shown.is_relative_to(REPO_ROOT):
        shown = shown.relative_to(REPO_ROOT)
    print(f"wrote {len(records)} rows to {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
