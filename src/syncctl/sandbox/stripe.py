"""Stripe emulator: Checkout Sessions with line items, Charges, Disputes, Events, Prices, Products.

It answers like api.stripe.com does for the read calls syncctl makes, including
the parts that catch clients out:

- lists are newest first (`created` desc, then id) with cursor paging
  (`starting_after` / `ending_before` take object ids), `limit` 1..100
  (default 10; 101 is a 400, not a clamp), unknown parameters are a 400;
- `expand[]=data.line_items` on the list (and `expand[]=line_items` on a
  retrieve) embeds only the first handful of line items (`embedded_line_items`,
  default 5) and sets `line_items.has_more`: the rest must be paged from
  `/v1/checkout/sessions/{id}/line_items`; expansions deeper than 4 levels are
  refused;
- `status=complete` includes sessions whose `payment_status` is still
  `unpaid` (delayed payment methods); `mark_paid` flips them later and records
  `checkout.session.async_payment_succeeded`;
- events embed a snapshot of the session *without* line items, rendered at
  the account's API version, and are only listed for 30 days;
- a paid payment-mode session's PaymentIntent has a charge (`ch_...`); a
  refund (`refund`, partial or full) changes only the charge (the session
  stays `paid`) and records `charge.refunded` even when partial, with
  `refunded` true only once the whole amount is back; a dispute (`dispute`,
  `close_dispute`) records `charge.dispute.*` events whose object is the
  dispute, and the charge stays `disputed` after a dispute is won; the charge
  omits `refunds` (not included since API 2022-11-15);
- errors use Stripe's body `{"error": {type, code, message, param, doc_url}}`;
  a wrong key is a 401 whose message shows the key masked as Stripe does;
- a token bucket (25 requests/s, like a sandbox account) answers 429 with
  code `rate_limit` and, like Stripe, no `Retry-After` (a knob adds one).

Sessions are stored as compact records and rendered into the full Stripe shape
only when answered, and kept in sorted key lists per status, so 100k sessions
fit in memory and a page costs a binary search plus at most `limit` renders.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import hashlib
import itertools
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncctl.sandbox.server import Emulator, Request, Response, route
from syncctl.sandbox.webhooks import WebhookSender, stripe_sender

SESSION_COMPLETED = "checkout.session.completed"
ASYNC_PAYMENT_SUCCEEDED = "checkout.session.async_payment_succeeded"
ASYNC_PAYMENT_FAILED = "checkout.session.async_payment_failed"
SESSION_EXPIRED = "checkout.session.expired"
CHARGE_REFUNDED = "charge.refunded"
DISPUTE_CREATED = "charge.dispute.created"
DISPUTE_CLOSED = "charge.dispute.closed"
DISPUTE_FUNDS_WITHDRAWN = "charge.dispute.funds_withdrawn"
DISPUTE_FUNDS_REINSTATED = "charge.dispute.funds_reinstated"

SESSION_STATUSES = ("open", "complete", "expired")
PAYMENT_STATUSES = ("paid", "unpaid", "no_payment_required")
#: A dispute's statuses (API 2024-04-10): `warning_*` are inquiries, the rest chargebacks.
OPEN_DISPUTE_STATUSES = (
    "warning_needs_response",
    "warning_under_review",
    "needs_response",
    "under_review",
)
CLOSED_DISPUTE_STATUSES = ("warning_closed", "won", "lost", "prevented")
DISPUTE_REASONS = (
    "bank_cannot_process",
    "check_returned",
    "credit_not_processed",
    "customer_initiated",
    "debit_not_authorized",
    "duplicate",
    "fraudulent",
    "general",
    "incorrect_account_details",
    "insufficient_funds",
    "product_not_received",
    "product_unacceptable",
    "subscription_canceled",
    "unrecognized",
)
MAX_LIMIT = 100
DEFAULT_LIMIT = 10
MAX_EXPAND_DEPTH = 4
DAY = 86400

_DOCS = "https://stripe.com/docs/error-codes"
_ALPHABET = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62 = bytes(_ALPHABET[i % 62] for i in range(256))


_NO_METADATA: Mapping[str, str] = {}  # shared by the many sessions without metadata


class _Fail(Exception):
    """Raised inside handlers; carries the Stripe error response to send."""

    def __init__(self, response: Response) -> None:
        super().__init__(str(response.body))
        self.response = response


def stripe_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> Response:
    """Stripe's error body: only the keys that apply, like the live API."""
    error: dict[str, Any] = {}
    if code:
        error["code"] = code
        error["doc_url"] = f"{_DOCS}/{code.replace('_', '-')}"
    error["message"] = message
    if param:
        error["param"] = param
    error["type"] = type
    return Response(status, {"error": error})


def mask_key(key: str) -> str:
    """Mask a key the way Stripe's 401 message does: prefix and last 4 kept."""
    match = re.match(r"^((?:sk|rk|pk)_[A-Za-z]+_)(.*)$", key)
    prefix, rest = (match.group(1), match.group(2)) if match else ("", key)
    if len(rest) <= 4:
        return prefix + "*" * len(rest)
    return prefix + "*" * (len(rest) - 4) + rest[-4:]


def _token(*parts: object, length: int = 24) -> str:
    """A stable Stripe-looking alphanumeric suffix for generated ids (fast: seeding)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=64).digest()
    return digest[:length].translate(_BASE62).decode()


# -- compact records (rendered to Stripe's shape on demand) ---------------------


@dataclass(frozen=True, slots=True)
class _Item:
    id: str
    price_id: str
    product_id: str
    quantity: int
    description: str
    unit_amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class _Session:
    id: str
    created: int
    status: str
    payment_status: str
    mode: str
    email: str | None
    name: str | None
    customer_email: str | None
    client_reference_id: str | None
    metadata: Mapping[str, str]
    items: tuple[_Item, ...]
    payment_intent: str | None
    currency: str
    livemode: bool

    @property
    def key(self) -> tuple[int, str]:
        return (self.created, self.id)

    @property
    def amount_total(self) -> int:
        return sum(item.unit_amount * item.quantity for item in self.items)


@dataclass(frozen=True, slots=True)
class _Charge:
    """The charge of a paid PaymentIntent (one per paid payment-mode session)."""

    id: str
    created: int
    payment_intent: str
    amount: int
    currency: str
    email: str | None
    name: str | None
    livemode: bool
    amount_refunded: int = 0
    disputed: bool = False

    @property
    def key(self) -> tuple[int, str]:
        return (self.created, self.id)

    @property
    def refunded(self) -> bool:
        """Stripe's `refunded`: true only once the whole amount is refunded."""
        return self.amount > 0 and self.amount_refunded >= self.amount


@dataclass(frozen=True, slots=True)
class _Dispute:
    id: str
    created: int
    charge: str
    payment_intent: str
    amount: int
    currency: str
    reason: str
    status: str
    livemode: bool

    @property
    def key(self) -> tuple[int, str]:
        return (self.created, self.id)


@dataclass(frozen=True, slots=True)
class _Event:
    id: str
    type: str
    created: int
    obj: _Session | _Charge | _Dispute  # snapshot at the time of the event

    @property
    def key(self) -> tuple[int, str]:
        return (self.created, self.id)


@dataclass(frozen=True, slots=True)
class _Price:
    id: str
    product: str
    active: bool
    unit_amount: int
    currency: str
    created: int
    nickname: str | None


@dataclass(frozen=True, slots=True)
class _Product:
    id: str
    name: str
    active: bool
    created: int
    description: str | None


def _insert(keys: list[tuple[int, str]], key: tuple[int, str]) -> None:
    """Insert keeping `keys` sorted; appending is the common (seeding) case."""
    if not keys or key > keys[-1]:
        keys.append(key)
    else:
        bisect.insort(keys, key)


def _remove(keys: list[tuple[int, str]], key: tuple[int, str]) -> None:
    index = bisect.bisect_left(keys, key)
    if index < len(keys) and keys[index] == key:
        del keys[index]


# -- query parsing ----------------------------------------------------------------


def _parse_query(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Rack-style form params: `a=1`, `a[]=x`/`a[0]=x` (list), `a[b]=c` (hash)."""
    params: dict[str, Any] = {}
    for key, value in pairs:
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if match is None:
            raise _Fail(stripe_error(400, f"Invalid parameter name: {key}", param=key))
        name, rest = match.groups()
        parts = re.findall(r"\[([^\[\]]*)\]", rest)
        if not parts:
            if isinstance(params.get(name), list | dict):
                raise _Fail(stripe_error(400, f"Invalid {name}: mixed value types", param=name))
            params[name] = value
        elif len(parts) == 1 and (parts[0] == "" or parts[0].isdigit()):
            current = params.setdefault(name, [])
            if not isinstance(current, list):
                raise _Fail(stripe_error(400, f"Invalid array: {name}", param=name))
            current.append(value)
        elif len(parts) == 1:
            current = params.setdefault(name, {})
            if not isinstance(current, dict):
                raise _Fail(stripe_error(400, f"Invalid hash: {name}", param=name))
            current[parts[0]] = value
        else:
            raise _Fail(stripe_error(400, f"Received unknown parameter: {key}", param=key))
    return params


def _check_known(params: Mapping[str, Any], allowed: Iterable[str]) -> None:
    known = set(allowed)
    for name in params:
        if name not in known:
            raise _Fail(stripe_error(400, f"Received unknown parameter: {name}", param=name))


def _integer(value: Any, param: str) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise _Fail(stripe_error(400, f"Invalid integer: {value}", param=param))
    return int(value)


def _limit(params: Mapping[str, Any]) -> int:
    if "limit" not in params:
        return DEFAULT_LIMIT
    limit = _integer(params["limit"], "limit")
    if limit < 1:
        raise _Fail(
            stripe_error(400, "This value must be greater than or equal to 1.", param="limit")
        )
    if limit > MAX_LIMIT:
        raise _Fail(
            stripe_error(400, "This value must be less than or equal to 100.", param="limit")
        )
    return limit


def _created_range(params: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """`created=<ts>` or `created[gt|gte|lt|lte]=<ts>` as inclusive bounds."""
    value = params.get("created")
    if value is None:
        return None, None
    if isinstance(value, str):
        exact = _integer(value, "created")
        return exact, exact
    if not isinstance(value, dict):
        raise _Fail(stripe_error(400, "Invalid created", param="created"))
    low: int | None = None
    high: int | None = None
    for op, raw in value.items():
        number = _integer(raw, f"created[{op}]")
        if op == "gte":
            low = number if low is None else max(low, number)
        elif op == "gt":
            low = number + 1 if low is None else max(low, number + 1)
        elif op == "lte":
            high = number if high is None else min(high, number)
        elif op == "lt":
            high = number - 1 if high is None else min(high, number - 1)
        else:
            raise _Fail(
                stripe_error(400, f"Received unknown parameter: created[{op}]", param="created")
            )
    return low, high


def _expansions(params: Mapping[str, Any], supported: Iterable[str]) -> set[str]:
    value = params.get("expand", [])
    if isinstance(value, str) or not isinstance(value, list):
        raise _Fail(stripe_error(400, "Invalid array", param="expand"))
    allowed = set(supported)
    for path in value:
        if path.count(".") + 1 > MAX_EXPAND_DEPTH:
            raise _Fail(
                stripe_error(
                    400,
                    f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property. "
                    f"The property `{path}` exceeded that limit.",
                    param="expand",
                )
            )
        if path not in allowed:
            raise _Fail(
                stripe_error(400, f"This property cannot be expanded ({path}).", param="expand")
            )
    return set(value)


def _page_keys(
    keys: Sequence[tuple[int, str]],
    *,
    low: int | None,
    high: int | None,
    limit: int,
    starting_after: tuple[int, str] | None,
    ending_before: tuple[int, str] | None,
    accept: Callable[[tuple[int, str]], bool] | None = None,
) -> tuple[list[tuple[int, str]], bool]:
    """One page, newest first, from keys sorted oldest first: (page, has_more)."""
    lo = 0 if low is None else bisect.bisect_left(keys, (low,))
    hi = len(keys) if high is None else bisect.bisect_left(keys, (high + 1,))
    if starting_after is not None:
        hi = min(hi, bisect.bisect_left(keys, starting_after))
    if ending_before is not None:
        lo = max(lo, bisect.bisect_right(keys, ending_before))
    found: list[tuple[int, str]] = []
    if ending_before is not None and starting_after is None:
        # The page right before the cursor (newer items), still newest first.
        index = lo
        while index < hi and len(found) <= limit:
            if accept is None or accept(keys[index]):
                found.append(keys[index])
            index += 1
        has_more = len(found) > limit
        return list(reversed(found[:limit])), has_more
    index = hi - 1
    while index >= lo and len(found) <= limit:
        if accept is None or accept(keys[index]):
            found.append(keys[index])
        index -= 1
    return found[:limit], len(found) > limit


# -- constant parts of rendered objects (shared, never mutated) -------------------

_NULL_ADDRESS = {
    "city": None,
    "country": None,
    "line1": None,
    "line2": None,
    "postal_code": None,
    "state": None,
}
_AUTOMATIC_TAX = {"enabled": False, "liability": None, "status": None, "provider": None}
_CUSTOM_TEXT = {
    "after_submit": None,
    "shipping_address": None,
    "submit": None,
    "terms_of_service_acceptance": None,
}
_INVOICE_CREATION = {
    "enabled": False,
    "invoice_data": {
        "account_tax_ids": None,
        "custom_fields": None,
        "description": None,
        "footer": None,
        "issuer": None,
        "metadata": {},
        "rendering_options": None,
    },
}
_PHONE = {"enabled": False}
_SAVED_PM_OPTIONS = {
    "allow_redisplay_filters": ["always"],
    "payment_method_remove": None,
    "payment_method_save": None,
}
_TOTAL_ZERO = {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}
_ADAPTIVE = {"enabled": False}
_MANAGED = {"enabled": False}
_PM_TYPES = ["card"]
_PMC_DETAILS = {"id": "pmc_1SandboxDefaultConfig", "parent": None}
_OUTCOME = {
    "advice_code": None,
    "network_advice_code": None,
    "network_decline_code": None,
    "network_status": "approved_by_network",
    "reason": None,
    "seller_message": "Payment complete.",
    "type": "authorized",
}
_CARD_CHECKS = {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"}
_EVIDENCE: dict[str, Any] = {
    key: None
    for key in (
        "access_activity_log",
        "billing_address",
        "cancellation_policy",
        "cancellation_policy_disclosure",
        "cancellation_rebuttal",
        "customer_communication",
        "customer_email_address",
        "customer_name",
        "customer_purchase_ip",
        "customer_signature",
        "duplicate_charge_documentation",
        "duplicate_charge_explanation",
        "duplicate_charge_id",
        "product_description",
        "receipt",
        "refund_policy",
        "refund_policy_disclosure",
        "refund_refusal_explanation",
        "service_date",
        "service_documentation",
        "shipping_address",
        "shipping_carrier",
        "shipping_date",
        "shipping_documentation",
        "shipping_tracking_number",
        "uncategorized_file",
        "uncategorized_text",
    )
} | {"enhanced_evidence": {}}
#: Restricted-key permissions Stripe names in a 403, by path.
_PERMISSIONS = (
    ("/v1/charges", "rak_charge_read"),
    ("/v1/disputes", "rak_dispute_read"),
    ("/v1/events", "rak_event_read"),
    ("/v1/prices", "rak_price_read"),
    ("/v1/products", "rak_product_read"),
)


class StripeEmulator(Emulator):
    """A Stripe account with Checkout Sessions, Events, Prices and Products."""

    name = "stripe"
    prefix = "/v1"

    # The knobs: set (and restored by `reset`) from `_options` in `_clear_state`.
    now: Callable[[], float]
    monotonic: Callable[[], float]
    retry_after: float | None
    embedded_line_items: int
    event_retention_days: int
    account_api_version: str

    def __init__(
        self,
        *,
        api_key: str,
        latency: float = 0.0,
        rate_limit_per_second: float | None = 25.0,
        retry_after: float | None = None,
        embedded_line_items: int = 5,
        event_retention_days: int = 30,
        account_api_version: str = "2024-04-10",
        now: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`retry_after`: send a Retry-After header on 429s (Stripe sends none).

        `embedded_line_items`: how many line items an expansion embeds.
        `now`: the wall clock for `created` stamps and event retention, so a
        test can seed the past; `monotonic` drives the rate limiter.
        """
        # State first: the base class looks at every attribute (properties
        # included) while collecting routes.
        self.api_key = api_key
        self._options: dict[str, Any] = {
            "now": now,
            "monotonic": monotonic,
            "rate_limit_per_second": rate_limit_per_second,
            "retry_after": retry_after,
            "embedded_line_items": embedded_line_items,
            "event_retention_days": event_retention_days,
            "account_api_version": account_api_version,
        }
        self.livemode = bool(re.match(r"^(?:sk|rk)_live_", api_key))
        #: The webhook endpoint events are posted to (`send_webhooks`); None: none.
        self.webhooks: WebhookSender | None = None
        self.account_id = "acct_1Sandbox" + _token("acct", api_key, length=10)
        self._salt = _token("ids", api_key, length=64)
        self._clear_state()
        super().__init__(latency=latency)

    def _clear_state(self) -> None:
        for name, value in self._options.items():
            setattr(self, name, value)
        #: Regexes of paths the key may not read (a restricted key): 403.
        self.denied: list[str] = []
        self._sessions: dict[str, _Session] = {}
        self._session_keys: dict[str | None, list[tuple[int, str]]] = {None: []}
        self._charges: dict[str, _Charge] = {}
        self._charge_keys: list[tuple[int, str]] = []
        self._charge_by_intent: dict[str, str] = {}
        self._disputes: dict[str, _Dispute] = {}
        self._dispute_keys: list[tuple[int, str]] = []
        self._events: dict[str, _Event] = {}
        self._event_keys: dict[str | None, list[tuple[int, str]]] = {None: []}
        self._prices: dict[str, _Price] = {}
        self._products: dict[str, _Product] = {}
        self._seq = itertools.count(1)

    def reset(self) -> None:
        """Back to the state after construction: no data, log, faults; knobs restored."""
        with self.lock:
            self._clear_state()
            self.faults.clear()
            self.log.clear()

    @property
    def rate_limit_per_second(self) -> float | None:
        """Token-bucket rate (burst = one second's worth); None turns limiting off."""
        return self._rate

    @rate_limit_per_second.setter
    def rate_limit_per_second(self, rate: float | None) -> None:
        # A new limit starts with a full bucket, so tests get exactly `rate` calls.
        self._rate = rate
        self._tokens = float(self._capacity())
        self._refilled_at = self.monotonic()

    # -- seeding --------------------------------------------------------------

    def _next_id(self, prefix: str, length: int = 24) -> str:
        seq = next(self._seq)
        # The sequence number leads, so ids sort in creation order (tie-break);
        # the tail is a rotation of a per-account salt (hashing per id is slow
        # when seeding 100k sessions).
        turn = seq % 40
        tail = self._salt[turn:] + self._salt[:turn]
        return f"{prefix}{seq:08d}{tail[: length - 8]}"

    def add_product(
        self,
        product_id: str,
        *,
        name: str = "Product",
        active: bool = True,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create (or replace) a product."""
        with self.lock:
            product = _Product(product_id, name, active, int(self.now()), description)
            self._products[product_id] = product
            return self._render_product(product)

    def add_price(
        self,
        price_id: str,
        product_id: str,
        active: bool = True,
        *,
        unit_amount: int = 1000,
        currency: str = "usd",
        nickname: str | None = None,
    ) -> dict[str, Any]:
        """Create (or replace) a one-time price; creates its product if missing."""
        with self.lock:
            if product_id not in self._products:
                self.add_product(product_id)
            price = _Price(
                price_id, product_id, active, unit_amount, currency, int(self.now()), nickname
            )
            self._prices[price_id] = price
            return self._render_price(price)

    def add_session(
        self,
        email: str | None,
        *,
        name: str | None = None,
        line_items: Sequence[tuple[str, str, int]] = (),
        status: str = "complete",
        payment_status: str = "paid",
        created: int | None = None,
        session_id: str | None = None,
        customer_email: str | None = None,
        metadata: Mapping[str, str] | None = None,
        client_reference_id: str | None = None,
        mode: str = "payment",
        completed_at: int | None = None,
    ) -> dict[str, Any]:
        """Add a Checkout Session (returned with all line items embedded).

        A complete one also records its `checkout.session.completed` event.

        `line_items` are (price_id, product_id, quantity); unknown prices and
        products are created. `email` lands in `customer_details.email` (only
        a completed session has customer details); `customer_email` is the
        address the merchant prefilled. The event is stamped `completed_at`
        (default: `created`).
        """
        with self.lock:
            session = self._add_session(
                email,
                name=name,
                line_items=line_items,
                status=status,
                payment_status=payment_status,
                created=created,
                session_id=session_id,
                customer_email=customer_email,
                metadata=metadata,
                client_reference_id=client_reference_id,
                mode=mode,
                completed_at=completed_at,
            )
            return self._render_session(session, expand_items=True, cap=None)

    def add_sessions(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Bulk seeding (benchmarks, 100k sessions): `add_session` keyword rows -> ids."""
        with self.lock:
            return [self._add_session(**row).id for row in rows]

    def _add_session(
        self,
        email: str | None,
        *,
        name: str | None = None,
        line_items: Sequence[tuple[str, str, int]] = (),
        status: str = "complete",
        payment_status: str = "paid",
        created: int | None = None,
        session_id: str | None = None,
        customer_email: str | None = None,
        metadata: Mapping[str, str] | None = None,
        client_reference_id: str | None = None,
        mode: str = "payment",
        completed_at: int | None = None,
    ) -> _Session:
        if status not in SESSION_STATUSES:
            raise ValueError(f"status must be one of {SESSION_STATUSES}")
        if payment_status not in PAYMENT_STATUSES:
            raise ValueError(f"payment_status must be one of {PAYMENT_STATUSES}")
        with self.lock:
            stamp = int(self.now()) if created is None else int(created)
            prefix = "cs_live_a1" if self.livemode else "cs_test_a1"
            sid = session_id or self._next_id(prefix, 56)
            if sid in self._sessions:
                raise ValueError(f"session {sid} exists")
            items = []
            currency = "usd"
            for price_id, product_id, quantity in line_items:
                price = self._prices.get(price_id)
                if price is None:
                    self.add_price(price_id, product_id)
                    price = self._prices[price_id]
                product = self._products.get(price.product)
                currency = price.currency
                items.append(
                    _Item(
                        id=self._next_id("li_", 24),
                        price_id=price_id,
                        product_id=price.product,
                        quantity=int(quantity),
                        description=product.name if product else "Product",
                        unit_amount=price.unit_amount,
                        currency=price.currency,
                    )
                )
            # Only a completed payment-mode session has created its PaymentIntent.
            has_intent = mode == "payment" and status == "complete"
            session = _Session(
                id=sid,
                created=stamp,
                status=status,
                payment_status=payment_status,
                mode=mode,
                email=email,
                name=name,
                customer_email=customer_email,
                client_reference_id=client_reference_id,
                metadata=dict(metadata) if metadata else _NO_METADATA,
                items=tuple(items),
                payment_intent=self._next_id("pi_", 24) if has_intent else None,
                currency=currency,
                livemode=self.livemode,
            )
            self._store(session, None)
            if status == "complete":
                self._record_event(SESSION_COMPLETED, session, completed_at or stamp)
            if payment_status == "paid":
                self._add_charge(session, completed_at or stamp)
            return session

    def complete_session(
        self,
        session_id: str,
        *,
        email: str | None = None,
        name: str | None = None,
        payment_status: str = "paid",
    ) -> dict[str, Any]:
        """An open session completes now (records `checkout.session.completed`)."""
        with self.lock:
            old = self._session(session_id)
            if old.status != "open":
                raise ValueError(f"session {session_id} is {old.status}, not open")
            new = dataclasses.replace(
                old,
                status="complete",
                payment_status=payment_status,
                email=email or old.email or old.customer_email,
                name=name or old.name,
                payment_intent=old.payment_intent
                or (self._next_id("pi_", 24) if old.mode == "payment" else None),
            )
            self._store(new, old)
            self._record_event(SESSION_COMPLETED, new, int(self.now()))
            if payment_status == "paid":
                self._add_charge(new, int(self.now()))
            return self._render_session(new, expand_items=True, cap=None)

    def mark_paid(self, session_id: str) -> dict[str, Any]:
        """A delayed payment succeeded: unpaid -> paid, plus the async event."""
        with self.lock:
            old = self._session(session_id)
            if old.status != "complete" or old.payment_status != "unpaid":
                raise ValueError(f"session {session_id} is not complete and unpaid")
            new = dataclasses.replace(old, payment_status="paid")
            self._store(new, old)
            self._record_event(ASYNC_PAYMENT_SUCCEEDED, new, int(self.now()))
            self._add_charge(new, int(self.now()))
            return self._render_session(new, expand_items=True, cap=None)

    def mark_payment_failed(self, session_id: str) -> dict[str, Any]:
        """A delayed payment failed: stays unpaid; records the failure event."""
        with self.lock:
            session = self._session(session_id)
            if session.status != "complete" or session.payment_status != "unpaid":
                raise ValueError(f"session {session_id} is not complete and unpaid")
            self._record_event(ASYNC_PAYMENT_FAILED, session, int(self.now()))
            return self._render_session(session, expand_items=True, cap=None)

    def expire_session(self, session_id: str) -> dict[str, Any]:
        """An open session expires (records `checkout.session.expired`)."""
        with self.lock:
            old = self._session(session_id)
            if old.status != "open":
                raise ValueError(f"session {session_id} is {old.status}, not open")
            new = dataclasses.replace(old, status="expired")
            self._store(new, old)
            self._record_event(SESSION_EXPIRED, new, int(self.now()))
            return self._render_session(new, expand_items=True, cap=None)

    def refund(
        self, session_id: str, amount: int | None = None, *, at: int | None = None
    ) -> dict[str, Any]:
        """Refund a paid session's payment: what is left of it, or `amount` (partial).

        Like Stripe: the charge's `amount_refunded` grows, `refunded` turns
        true only once the whole amount is back, and `charge.refunded`
        (data.object = the charge) is recorded for partial refunds too. The
        session does not change (still `paid`). Returns the charge.
        """
        with self.lock:
            old = self._session_charge(session_id)
            left = old.amount - old.amount_refunded
            if left <= 0:
                raise ValueError(f"charge {old.id} is already fully refunded")
            value = left if amount is None else int(amount)
            if not 0 < value <= left:
                raise ValueError(f"refund amount must be between 1 and {left}")
            new = dataclasses.replace(old, amount_refunded=old.amount_refunded + value)
            self._charges[new.id] = new
            self._record_event(CHARGE_REFUNDED, new, self._stamp(at))
            return self._render_charge(new)

    def dispute(
        self,
        session_id: str,
        *,
        amount: int | None = None,
        reason: str = "fraudulent",
        status: str = "needs_response",
        at: int | None = None,
    ) -> dict[str, Any]:
        """The buyer disputes a paid session's payment with their bank.

        The charge becomes `disputed` and a dispute (`dp_...`) opens;
        `charge.dispute.created` (data.object = the dispute) is recorded, and
        for a chargeback (not an inquiry, `warning_*`) also
        `charge.dispute.funds_withdrawn`. One dispute per charge. Returns the
        dispute.
        """
        if status not in OPEN_DISPUTE_STATUSES:
            raise ValueError(f"a new dispute's status is one of {OPEN_DISPUTE_STATUSES}")
        if reason not in DISPUTE_REASONS:
            raise ValueError(f"reason must be one of {DISPUTE_REASONS}")
        with self.lock:
            charge = self._session_charge(session_id)
            if charge.disputed:
                raise ValueError(f"charge {charge.id} is already disputed")
            stamp = self._stamp(at)
            disputed = dataclasses.replace(charge, disputed=True)
            self._charges[charge.id] = disputed
            found = _Dispute(
                id=self._next_id("dp_", 24),
                created=stamp,
                charge=charge.id,
                payment_intent=charge.payment_intent,
                amount=charge.amount if amount is None else int(amount),
                currency=charge.currency,
                reason=reason,
                status=status,
                livemode=charge.livemode,
            )
            self._disputes[found.id] = found
            _insert(self._dispute_keys, found.key)
            self._record_event(DISPUTE_CREATED, found, stamp)
            if not status.startswith("warning_"):
                self._record_event(DISPUTE_FUNDS_WITHDRAWN, found, stamp)
            return self._render_dispute(found)

    def close_dispute(
        self, dispute_id: str, status: str, *, at: int | None = None
    ) -> dict[str, Any]:
        """A dispute ends: a chargeback `won` or `lost`, an inquiry `warning_closed`.

        Records `charge.dispute.closed` (and `charge.dispute.funds_reinstated`
        when won). The charge keeps `disputed: true` whatever the outcome:
        Stripe's `disputed` says whether the charge has been disputed.
        """
        with self.lock:
            old = self._disputes.get(dispute_id)
            if old is None:
                raise KeyError(f"no dispute {dispute_id}")
            if old.status in CLOSED_DISPUTE_STATUSES:
                raise ValueError(f"dispute {dispute_id} is already {old.status}")
            inquiry = old.status.startswith("warning_")
            allowed = ("warning_closed",) if inquiry else ("won", "lost")
            if status not in allowed:
                raise ValueError(f"dispute {dispute_id} ({old.status}) can close as {allowed}")
            stamp = self._stamp(at)
            new = dataclasses.replace(old, status=status)
            self._disputes[new.id] = new
            self._record_event(DISPUTE_CLOSED, new, stamp)
            if status == "won":
                self._record_event(DISPUTE_FUNDS_REINSTATED, new, stamp)
            return self._render_dispute(new)

    def send_webhooks(self, url: str, secret: str, **options: Any) -> WebhookSender:
        """Post every event recorded from now on to `url`, signed with `secret`.

        As a webhook endpoint does at Stripe: one Event per POST, the object
        the Events API serves, `Stripe-Signature` over the raw body, retried
        on any answer but a 2xx. `options` go to `webhooks.stripe_sender`
        (`events`, `retry_delays`, `timeout`, `duplicate`, `reorder`, `seed`,
        `clock`).
        Replaces (and stops) an earlier endpoint.
        """
        # Signed with the real clock (`options` may pass another `clock`), not the
        # `now` knob that seeds the past: Stripe signs at delivery time.
        sender = stripe_sender(url, secret, **options)
        with self.lock:
            previous, self.webhooks = self.webhooks, sender
        if previous is not None:
            previous.close()
        return sender

    def stop_webhooks(self) -> None:
        with self.lock:
            previous, self.webhooks = self.webhooks, None
        if previous is not None:
            previous.close()

    def deny(self, path_regex: str) -> None:
        """Make the key a restricted key without read access to matching paths."""
        with self.lock:
            self.denied.append(path_regex)

    # -- inspection -------------------------------------------------------------

    @property
    def sessions(self) -> list[dict[str, Any]]:
        """Every session, newest first, with all its line items embedded."""
        with self.lock:
            keys = self._session_keys[None]
            return [
                self._render_session(self._sessions[sid], expand_items=True, cap=None)
                for _, sid in reversed(keys)
            ]

    def session(self, session_id: str) -> dict[str, Any]:
        """One session with all its line items embedded (KeyError if unknown)."""
        with self.lock:
            return self._render_session(self._sessions[session_id], expand_items=True, cap=None)

    @property
    def session_count(self) -> int:
        with self.lock:
            return len(self._sessions)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every recorded event, newest first (retention not applied)."""
        with self.lock:
            return [
                self._render_event(self._events[eid]) for _, eid in reversed(self._event_keys[None])
            ]

    @property
    def charges(self) -> list[dict[str, Any]]:
        """Every charge, newest first."""
        with self.lock:
            return [
                self._render_charge(self._charges[cid]) for _, cid in reversed(self._charge_keys)
            ]

    def charge_of(self, session_id: str) -> dict[str, Any]:
        """The charge of a session's payment (KeyError if it has none)."""
        with self.lock:
            return self._render_charge(self._session_charge(session_id))

    @property
    def disputes(self) -> list[dict[str, Any]]:
        """Every dispute, newest first."""
        with self.lock:
            return [
                self._render_dispute(self._disputes[did]) for _, did in reversed(self._dispute_keys)
            ]

    @property
    def prices(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {pid: self._render_price(p) for pid, p in self._prices.items()}

    @property
    def products(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {pid: self._render_product(p) for pid, p in self._products.items()}

    # -- state internals --------------------------------------------------------

    def _session(self, session_id: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise KeyError(f"no session {session_id}")
        return session

    def _stamp(self, at: int | None) -> int:
        return int(self.now()) if at is None else int(at)

    def _session_charge(self, session_id: str) -> _Charge:
        session = self._session(session_id)
        charge_id = self._charge_by_intent.get(session.payment_intent or "")
        if charge_id is None:
            raise KeyError(f"session {session_id} has no paid payment (no charge)")
        return self._charges[charge_id]

    def _add_charge(self, session: _Session, created: int) -> None:
        """The charge Stripe creates when a payment-mode session's money is in."""
        intent = session.payment_intent
        if intent is None or intent in self._charge_by_intent:
            return
        # Stripe's charge and PaymentIntent ids share their tail; this keeps
        # seeding from consuming the id sequence (other ids stay as they were).
        charge = _Charge(
            id="ch_" + intent.removeprefix("pi_"),
            created=int(created),
            payment_intent=intent,
            amount=session.amount_total,
            currency=session.currency,
            email=session.email or session.customer_email,
            name=session.name,
            livemode=session.livemode,
        )
        self._charges[charge.id] = charge
        self._charge_by_intent[intent] = charge.id
        _insert(self._charge_keys, charge.key)

    def _store(self, new: _Session, old: _Session | None) -> None:
        self._sessions[new.id] = new
        if old is None:
            _insert(self._session_keys[None], new.key)
        elif old.status != new.status:
            _remove(self._session_keys.setdefault(old.status, []), old.key)
        if old is None or old.status != new.status:
            _insert(self._session_keys.setdefault(new.status, []), new.key)

    def _record_event(self, type_: str, obj: _Session | _Charge | _Dispute, created: int) -> _Event:
        event = _Event(self._next_id("evt_", 24), type_, int(created), obj)
        self._events[event.id] = event
        _insert(self._event_keys[None], event.key)
        _insert(self._event_keys.setdefault(type_, []), event.key)
        if self.webhooks is not None and self.webhooks.wants(type_):
            self.webhooks.send(event.id, type_, self._render_event(event))
        return event

    # -- rendering ----------------------------------------------------------------

    def _render_item(self, item: _Item) -> dict[str, Any]:
        price = self._prices.get(item.price_id)
        amount = item.unit_amount * item.quantity
        return {
            "amount_discount": 0,
            "amount_subtotal": amount,
            "amount_tax": 0,
            "amount_total": amount,
            "currency": item.currency,
            "description": item.description,
            "id": item.id,
            "object": "item",
            "price": self._render_price(price) if price else None,
            "quantity": item.quantity,
            "metadata": {},
            "adjustable_quantity": None,
        }

    def _items_list(
        self, session: _Session, items: Sequence[_Item], has_more: bool
    ) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [self._render_item(item) for item in items],
            "has_more": has_more,
            "url": f"/v1/checkout/sessions/{session.id}/line_items",
        }

    def _render_session(
        self, s: _Session, *, expand_items: bool = False, cap: int | None = -1
    ) -> dict[str, Any]:
        complete = s.status == "complete"
        total = s.amount_total if s.mode != "setup" else None
        body: dict[str, Any] = {
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": total,
            "amount_total": total,
            "automatic_tax": _AUTOMATIC_TAX,
            "billing_address_collection": None,
            "cancel_url": "https://example.com/cancel",
            "client_reference_id": s.client_reference_id,
            "client_secret": None,
            "consent": None,
            "consent_collection": None,
            "created": s.created,
            "currency": s.currency if s.mode != "setup" else None,
            "custom_fields": [],
            "custom_text": _CUSTOM_TEXT,
            "customer": None,
            "customer_creation": "if_required",
            "customer_details": {
                "address": _NULL_ADDRESS,
                "email": s.email,
                "name": s.name,
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
                "business_name": None,
                "individual_name": None,
            }
            if complete
            else None,
            "customer_email": s.customer_email,
            "expires_at": s.created + DAY,
            "id": s.id,
            "invoice": None,
            "invoice_creation": _INVOICE_CREATION if s.mode == "payment" else None,
            "livemode": s.livemode,
            "locale": None,
            "metadata": dict(s.metadata),
            "mode": s.mode,
            "object": "checkout.session",
            "payment_intent": s.payment_intent,
            "payment_link": None,
            "payment_method_collection": "if_required" if s.mode != "payment" else None,
            "payment_method_configuration_details": _PMC_DETAILS,
            "payment_method_options": {},
            "payment_method_types": _PM_TYPES,
            "payment_status": s.payment_status,
            "phone_number_collection": _PHONE,
            "recovered_from": None,
            "saved_payment_method_options": _SAVED_PM_OPTIONS if s.mode != "setup" else None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": s.status,
            "submit_type": None,
            "subscription": None,
            "success_url": "https://example.com/success",
            "total_details": _TOTAL_ZERO if s.mode != "setup" else None,
            "ui_mode": "hosted",
            "url": None if s.status != "open" else f"https://checkout.stripe.com/c/pay/{s.id}",
            "adaptive_pricing": _ADAPTIVE,
            "discounts": [],
            "collected_information": {
                "shipping_details": None,
                "business_name": None,
                "individual_name": None,
            }
            if complete
            else None,
            "permissions": None,
            "wallet_options": None,
            "origin_context": None,
            "currency_conversion": None,
            "customer_account": None,
            "integration_identifier": None,
            "managed_payments": _MANAGED,
        }
        if expand_items:
            limit = self.embedded_line_items if cap == -1 else cap
            shown = s.items if limit is None else s.items[:limit]
            body["line_items"] = self._items_list(s, shown, len(shown) < len(s.items))
        return body

    def _render_object(self, obj: _Session | _Charge | _Dispute) -> dict[str, Any]:
        if isinstance(obj, _Charge):
            return self._render_charge(obj)
        if isinstance(obj, _Dispute):
            return self._render_dispute(obj)
        return self._render_session(obj)

    def _render_charge(self, c: _Charge) -> dict[str, Any]:
        tail = c.id.removeprefix("ch_")
        # `refunds` is left out: Stripe stopped including it (API 2022-11-15)
        # unless asked for with expand[].
        return {
            "amount": c.amount,
            "amount_captured": c.amount,
            "amount_refunded": c.amount_refunded,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": "txn_" + tail,
            "billing_details": {
                "address": _NULL_ADDRESS,
                "email": c.email,
                "name": c.name,
                "phone": None,
                "tax_id": None,
            },
            "calculated_statement_descriptor": "SYNCCTL SANDBOX",
            "captured": True,
            "created": c.created,
            "currency": c.currency,
            "customer": None,
            "description": None,
            "disputed": c.disputed,
            "failure_balance_transaction": None,
            "failure_code": None,
            "failure_message": None,
            "fraud_details": {},
            "id": c.id,
            "livemode": c.livemode,
            "metadata": {},
            "object": "charge",
            "on_behalf_of": None,
            "outcome": _OUTCOME,
            "paid": True,
            "payment_intent": c.payment_intent,
            "payment_method": "pm_" + tail,
            "payment_method_details": {
                "card": {
                    "amount_authorized": c.amount,
                    "authorization_code": None,
                    "brand": "visa",
                    "checks": _CARD_CHECKS,
                    "country": "US",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "extended_authorization": {"status": "disabled"},
                    "fingerprint": "SyncctlSandbox42",
                    "funding": "credit",
                    "incremental_authorization": {"status": "unavailable"},
                    "installments": None,
                    "last4": "4242",
                    "mandate": None,
                    "multicapture": {"status": "unavailable"},
                    "network": "visa",
                    "network_token": {"used": False},
                    "network_transaction_id": None,
                    "overcapture": {"maximum_amount_capturable": c.amount, "status": "unavailable"},
                    "regulated_status": None,
                    "three_d_secure": None,
                    "transaction_link_id": None,
                    "wallet": None,
                },
                "type": "card",
            },
            "receipt_email": None,
            "receipt_number": None,
            "receipt_url": f"https://pay.stripe.com/receipts/payment/{tail}",
            "refunded": c.refunded,
            "review": None,
            "shipping": None,
            "source": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "succeeded",
            "transfer_data": None,
            "transfer_group": None,
        }

    def _render_dispute(self, d: _Dispute) -> dict[str, Any]:
        inquiry = d.status.startswith("warning_")
        return {
            "amount": d.amount,
            # Stripe lists the funds withdrawn/reinstated here; the emulator keeps no ledger.
            "balance_transactions": [],
            "charge": d.charge,
            "created": d.created,
            "currency": d.currency,
            "enhanced_eligibility_types": [],
            "evidence": _EVIDENCE,
            "evidence_details": {
                "due_by": d.created + 7 * DAY,
                "enhanced_eligibility": {},
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "id": d.id,
            "is_charge_refundable": inquiry and d.status != "warning_closed",
            "livemode": d.livemode,
            "metadata": {},
            "object": "dispute",
            "payment_intent": d.payment_intent,
            "payment_method_details": {
                "card": {
                    "brand": "visa",
                    "case_type": "inquiry" if inquiry else "chargeback",
                    "network": "visa",
                    "network_reason_code": "10.4",
                },
                "type": "card",
            },
            "reason": d.reason,
            "status": d.status,
        }

    def _render_event(self, event: _Event) -> dict[str, Any]:
        return {
            "api_version": self.account_api_version,
            "created": event.created,
            # Events carry the object as it was (a session never with its line items).
            "data": {"object": self._render_object(event.obj)},
            "id": event.id,
            "livemode": self.livemode,
            "object": "event",
            "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None},
            "type": event.type,
        }

    def _render_price(self, price: _Price) -> dict[str, Any]:
        return {
            "active": price.active,
            "billing_scheme": "per_unit",
            "created": price.created,
            "currency": price.currency,
            "custom_unit_amount": None,
            "id": price.id,
            "livemode": self.livemode,
            "lookup_key": None,
            "metadata": {},
            "nickname": price.nickname,
            "object": "price",
            "product": price.product,
            "recurring": None,
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "one_time",
            "unit_amount": price.unit_amount,
            "unit_amount_decimal": str(price.unit_amount),
        }

    def _render_product(self, product: _Product) -> dict[str, Any]:
        default_price = next(
            (p.id for p in self._prices.values() if p.product == product.id and p.active), None
        )
        return {
            "active": product.active,
            "created": product.created,
            "default_price": default_price,
            "description": product.description,
            "id": product.id,
            "images": [],
            "livemode": self.livemode,
            "marketing_features": [],
            "metadata": {},
            "name": product.name,
            "object": "product",
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "unit_label": None,
            "updated": product.created,
            "url": None,
            "type": "service",
        }

    # -- hooks ----------------------------------------------------------------------

    def _request_id(self) -> str:
        return "req_" + _token("req", next(self._seq), length=14)

    def authenticate(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        provided: str | None = None
        if header.lower().startswith("bearer "):
            provided = header[7:].strip()
        elif header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            provided = decoded.split(":", 1)[0]
        if not provided:
            return stripe_error(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for "
                "details, or we can help at https://support.stripe.com/.",
            )
        if provided != self.api_key:
            return stripe_error(401, f"Invalid API Key provided: {mask_key(provided)}")
        for pattern in self.denied:
            if re.search(pattern, request.path):
                permission = next(
                    (name for prefix, name in _PERMISSIONS if request.path.startswith(prefix)),
                    "rak_checkout_session_read",
                )
                return stripe_error(
                    403,
                    f"The provided key '{mask_key(provided)}' does not have the required "
                    f"permissions for this endpoint on account '{self.account_id}'. Having "
                    f"the '{permission}' permission would allow this request to continue.",
                )
        return None

    def _capacity(self) -> float:
        rate = self.rate_limit_per_second
        return max(1.0, rate) if rate is not None else 1.0

    def throttle(self, request: Request) -> Response | None:
        rate = self.rate_limit_per_second
        if rate is None:
            return None
        now = self.monotonic()
        self._tokens = min(self._capacity(), self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        response = stripe_error(
            429,
            "Request rate limit exceeded. You can learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            code="rate_limit",
        )
        if self.retry_after is not None:
            response.headers["Retry-After"] = f"{self.retry_after:g}"
        self.decorate(request, response)
        return response

    def decorate(self, request: Request, response: Response) -> None:
        response.headers.setdefault("Request-Id", self._request_id())
        response.headers.setdefault(
            "Stripe-Version", request.headers.get("stripe-version") or self.account_api_version
        )
        response.headers.setdefault("Cache-Control", "no-cache, no-store")

    def not_found(self, request: Request) -> Response:
        return stripe_error(
            404,
            f"Unrecognized request URL ({request.method}: {request.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )

    def error_response(self, status: int, message: str) -> Response:
        if status == 405:
            return stripe_error(
                404, "Unrecognized request URL. Please see https://stripe.com/docs."
            )
        if status == 429:
            return stripe_error(429, message, code="rate_limit")
        if status >= 500:
            return stripe_error(status, message, type="api_error")
        return stripe_error(status, message)

    # -- routes -----------------------------------------------------------------------

    def _answer(self, build: Callable[[], Any]) -> Response:
        try:
            return Response(200, build())
        except _Fail as fail:
            return fail.response

    def _cursor(
        self, params: Mapping[str, Any], name: str, lookup: Callable[[str], tuple[int, str] | None]
    ) -> tuple[int, str] | None:
        value = params.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise _Fail(stripe_error(400, f"Invalid string: {name}", param=name))
        key = lookup(value)
        if key is None:
            raise _Fail(
                stripe_error(400, f"No such object: '{value}'", code="resource_missing", param=name)
            )
        return key

    @route("GET", "/checkout/sessions")
    def list_sessions(self, request: Request) -> Response:
        def build() -> dict[str, Any]:
            params = _parse_query(request.query)
            _check_known(
                params,
                (
                    "created",
                    "customer",
                    "customer_details",
                    "ending_before",
                    "expand",
                    "limit",
                    "payment_intent",
                    "payment_link",
                    "starting_after",
                    "status",
                    "subscription",
                ),
            )
            limit = _limit(params)
            low, high = _created_range(params)
            expand = _expansions(params, ("data.line_items",))
            status = params.get("status")
            if status is not None and status not in SESSION_STATUSES:
                raise _Fail(
                    stripe_error(
                        400,
                        f"Invalid status: must be one of {', '.join(SESSION_STATUSES)}",
                        param="status",
                    )
                )
            checks: list[Callable[[_Session], bool]] = []
            details = params.get("customer_details")
            if details is not None:
                if not isinstance(details, dict) or "email" not in details:
                    raise _Fail(
                        stripe_error(
                            400,
                            "Missing required param: customer_details[email].",
                            param="customer_details[email]",
                        )
                    )
                email = details["email"]
                checks.append(lambda s: s.email == email)
            if "payment_intent" in params:
                intent = params["payment_intent"]
                checks.append(lambda s: s.payment_intent == intent)
            for unsupported in ("customer", "payment_link", "subscription"):
                if unsupported in params:  # the emulator has none of these objects
                    checks.append(lambda s: False)

            keys = self._session_keys.get(status, [])
            accept = None
            if checks:

                def accept(key: tuple[int, str]) -> bool:
                    session = self._sessions[key[1]]
                    return all(check(session) for check in checks)

            return self._list_page(
                params,
                keys,
                self._sessions,
                lambda found: self._render_session(found, expand_items="data.line_items" in expand),
                "/v1/checkout/sessions",
                low=low,
                high=high,
                limit=limit,
                accept=accept,
            )

        return self._answer(build)

    def _list_page(
        self,
        params: dict[str, Any],
        keys: Sequence[tuple[int, str]],
        objects: Mapping[str, Any],
        render: Callable[[Any], dict[str, Any]],
        url: str,
        *,
        low: int | None,
        high: int | None,
        limit: int,
        accept: Callable[[tuple[int, str]], bool] | None = None,
    ) -> dict[str, Any]:
        """One page of a list endpoint, newest first, as Stripe's list object: keyset
        paging over `keys` with `starting_after`/`ending_before` ids of `objects`."""

        def lookup(object_id: str) -> tuple[int, str] | None:
            found = objects.get(object_id)
            return found.key if found else None

        page, has_more = _page_keys(
            keys,
            low=low,
            high=high,
            limit=limit,
            starting_after=self._cursor(params, "starting_after", lookup),
            ending_before=self._cursor(params, "ending_before", lookup),
            accept=accept,
        )
        return {
            "object": "list",
            "data": [render(objects[object_id]) for _, object_id in page],
            "has_more": has_more,
            "url": url,
        }

    def _missing(self, kind: str, object_id: str, param: str) -> _Fail:
        return _Fail(
            stripe_error(
                404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
            )
        )

    @route("GET", "/checkout/sessions/{session}")
    def get_session(self, request: Request, session: str) -> Response:
        def build() -> dict[str, Any]:
            params = _parse_query(request.query)
            _check_known(params, ("expand",))
            expand = _expansions(params, ("line_items",))
            found = self._sessions.get(session)
            if found is None:
                raise self._missing("checkout.session", session, "session")
            return self._render_session(found, expand_items="line_items" in expand)

        return self._answer(build)

    @route("GET", "/checkout/sessions/{session}/line_items")
    def list_line_items(self, request: Request, session: str) -> Response:
        def build() -> dict[str, Any]:
            params = _parse_query(request.query)
            _check_known(params, ("ending_before", "expand", "limit", "starting_after"))
            limit = _limit(params)
            _expansions(params, ())
            found = self._sessions.get(session)
            if found is None:
                raise self._missing("checkout.session", session, "session")
            items = found.items
            # Line items keep the session's order; cursors are item ids.
            positions = {item.id: index for index, item in enumerate(items)}

            def position(name: str) -> int | None:
                value = params.get(name)
                if value is None:
                    return None
                if value not in positions:
                    raise _Fail(
                        stripe_error(
                            400, f"No such object: '{value}'", code="resource_missing", param=name
                        )
                    )
                return positions[value]

            after, before = position("starting_after"), position("ending_before")
            if after is not None:
                window = items[after + 1 :]
                page, has_more = window[:limit], len(window) > limit
            elif before is not None:
                window = items[:before]
                page, has_more = window[-limit:], len(window) > limit
            else:
                page, has_more = items[:limit], len(items) > limit
            return self._items_list(found, page, has_more)

        return self._answer(build)

    @route("GET", "/events")
    def list_events(self, request: Request) -> Response:
        def build() -> dict[str, Any]:
            params = _parse_query(request.query)
            _check_known(
                params,
                (
                    "created",
                    "delivery_success",
                    "ending_before",
                    "expand",
                    "limit",
                    "starting_after",
                    "type",
                    "types",
                ),
            )
            limit = _limit(params)
            low, high = _created_range(params)
            _expansions(params, ())
            if "type" in params and "types" in params:
                raise _Fail(
                    stripe_error(
                        400, "You may pass either `type` or `types`, but not both.", param="types"
                    )
                )
            types = params.get("types")
            if types is not None and (not isinstance(types, list) or len(types) > 20):
                raise _Fail(
                    stripe_error(400, "`types` must be an array of at most 20 types", param="types")
                )
            horizon = int(self.now()) - self.event_retention_days * DAY
            low = horizon if low is None else max(low, horizon)
            keys = self._event_keys[None]
            accept: Callable[[tuple[int, str]], bool] | None = None
            single = params.get("type")
            if isinstance(single, str) and "*" in single:
                pattern = re.compile(re.escape(single).replace(r"\*", ".*") + "$")

                def accept(key: tuple[int, str]) -> bool:
                    return pattern.match(self._events[key[1]].type) is not None

            elif isinstance(single, str):
                keys = self._event_keys.get(single, [])
            elif types is not None and len(types) == 1:
                keys = self._event_keys.get(types[0], [])
            elif types is not None:
                wanted = set(types)

                def accept(key: tuple[int, str]) -> bool:
                    return self._events[key[1]].type in wanted

            return self._list_page(
                params,
                keys,
                self._events,
                self._render_event,
                "/v1/events",
                low=low,
                high=high,
                limit=limit,
                accept=accept,
            )

        return self._answer(build)

    @route("GET", "/events/{event}")
    def get_event(self, request: Request, event: str) -> Response:
        def build() -> dict[str, Any]:
            _check_known(_parse_query(request.query), ("expand",))
            found = self._events.get(event)
            horizon = int(self.now()) - self.event_retention_days * DAY
            if found is None or found.created < horizon:
                raise self._missing("event", event, "id")
            return self._render_event(found)

        return self._answer(build)

    def _string(self, params: Mapping[str, Any], name: str) -> str | None:
        value = params.get(name)
        if value is not None and not isinstance(value, str):
            raise _Fail(stripe_error(400, f"Invalid string: {name}", param=name))
        return value

    @route("GET", "/charges")
    def list_charges(self, request: Request) -> Response:
        def build() -> dict[str, Any]:
            params = _parse_query(request.query)
            _check_known(
                params,
                (
                    "created",
                    "customer",
                    "ending_before",
                    "expand",
                    "limit",
                    "payment_intent",
                    "starting_after",
                    "transfer_group",
                ),
            )
            limit = _limit(params)
            low, high = _created_range(params)
            _expansions(params, ())
            keys: Sequence[tuple[int, str]] = self._charge_keys
            intent = self._string(params, "payment_intent")
            if intent is not None:
                # Indexed: a filter by one payment never scans 100k charges.
                found = self._charge_by_intent.get(intent)
                keys = [self._charges[found].key] if found else []
            if "customer" in params or "transfer_group" in params:
                keys = []  # the emulator has neither customers nor transfer groups

            return self._list_page(
                params,
                keys,
                self._charges,
                self._render_charge,
                "/v1/charges",
                low=low,
                high=high,
                limit=limit,
            )

        return self._answer(build)

    @route("GET", "/charges/{charge}")
    def get_charge(self, request: Request, charge: str) -> Response:
        return self._retrieve(request, "charge", "id", self._charges.get(charge), charge)

    @route("GET", "/disputes")
    def list_disputes(self, request: Request) -> Response:
        def build() -> dict[str, Any]:
            params = _parse_query(request.query)
            _check_known(
                params,
                (
                    "charge",
                    "created",
                    "ending_before",
                    "expand",
                    "limit",
                    "payment_intent",
                    "starting_after",
                ),
            )
            limit = _limit(params)
            low, high = _created_range(params)
            _expansions(params, ())
            charge = self._string(params, "charge")
            intent = self._string(params, "payment_intent")
            accept: Callable[[tuple[int, str]], bool] | None = None
            if charge is not None or intent is not None:

                def accept(key: tuple[int, str]) -> bool:
                    dispute = self._disputes[key[1]]
                    return (charge is None or dispute.charge == charge) and (
                        intent is None or dispute.payment_intent == intent
                    )

            return self._list_page(
                params,
                self._dispute_keys,
                self._disputes,
                self._render_dispute,
                "/v1/disputes",
                low=low,
                high=high,
                limit=limit,
                accept=accept,
            )

        return self._answer(build)

    @route("GET", "/disputes/{dispute}")
    def get_dispute(self, request: Request, dispute: str) -> Response:
        return self._retrieve(request, "dispute", "dispute", self._disputes.get(dispute), dispute)

    def _retrieve(
        self, request: Request, kind: str, param: str, found: Any, object_id: str
    ) -> Response:
        """GET /v1/<kind>s/<id> of a charge or dispute: `expand` only, 404 when unknown."""

        def build() -> dict[str, Any]:
            params = _parse_query(request.query)
            _check_known(params, ("expand",))
            _expansions(params, ())
            if found is None:
                raise self._missing(kind, object_id, param)
            return self._render_charge(found) if kind == "charge" else self._render_dispute(found)

        return self._answer(build)

    @route("GET", "/prices/{price}")
    def get_price(self, request: Request, price: str) -> Response:
        def build() -> dict[str, Any]:
            _check_known(_parse_query(request.query), ("expand",))
            found = self._prices.get(price)
            if found is None:
                raise self._missing("price", price, "price")
            return self._render_price(found)

        return self._answer(build)

    @route("GET", "/products/{product}")
    def get_product(self, request: Request, product: str) -> Response:
        def build() -> dict[str, Any]:
            _check_known(_parse_query(request.query), ("expand",))
            found = self._products.get(product)
            if found is None:
                raise self._missing("product", product, "id")
            return self._render_product(found)

        return self._answer(build)
