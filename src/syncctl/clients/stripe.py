"""Stripe client: completed Checkout Sessions with their line items, and their events.

Built on the official SDK (`stripe.StripeClient`) so request encoding, API
versioning and error classification follow Stripe's own code, but every byte
goes through syncctl's `ServiceHTTP` (an `stripe.HTTPClient` adapter), so
retries, `Retry-After`, timeouts and call counters behave as for the other
services. Results are frozen dataclasses parsed defensively from the SDK's
objects; SDK exceptions become `syncctl.errors`, with the key redacted.

Why the awkward parts exist:
- `status=complete` does not mean paid (delayed payment methods): callers
  decide with `CheckoutSession.is_paid`.
- An expanded `line_items` holds only the first few items; the rest are paged
  from `/v1/checkout/sessions/{id}/line_items`, so a VIP item in position 6 is
  never missed.
- Events embed the session without line items (and rendered at the account's
  API version at event time), so the session is fetched again.
- Refunds and disputes (desired-state rule 17) never show on the session: it
  stays `paid`. They live on the charge of the session's PaymentIntent
  (`refunded` is true only when the whole amount is back; `charge.refunded`
  fires for partial refunds too) and on its dispute, whose `status` tells a
  won dispute from a lost one while the charge's `disputed` stays true.
  `iter_purchase_events` reads them with the checkout events in one paged
  read of `/v1/events`; `iter_payment_troubles` reads them for full runs from
  `/v1/charges` (and `/v1/disputes` only when a charge is disputed).
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import stripe

from syncctl.clients import VendorClient, header_credential
from syncctl.errors import (
    AuthRejected,
    BadResponse,
    Conflict,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServiceError,
    Unavailable,
)
from syncctl.net.http import CallStats, RetryPolicy, ServiceHTTP

if TYPE_CHECKING:
    from stripe.params import ChargeListParams, DisputeListParams, EventListParams
    from stripe.params.checkout import SessionLineItemListParams, SessionListParams

SERVICE = "stripe"
DEFAULT_EVENT_TYPES = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
)
#: Events that change what a purchase's payment is (rule 17). `charge.refunded`
#: carries the charge (and fires for partial refunds too); the dispute events
#: carry the dispute: `created` when the bank opens it, `closed` when it is
#: won, lost or an inquiry closes (`warning_closed`).
TROUBLE_EVENT_TYPES = (
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
)
#: What `iter_purchase_events` reads, in one `types[]` list (Stripe allows 20).
PURCHASE_EVENT_TYPES = DEFAULT_EVENT_TYPES + TROUBLE_EVENT_TYPES
#: Dispute statuses after which the merchant kept the money: a chargeback
#: won, or an inquiry that closed without becoming one.
#: `prevented` (Stripe, 2025-08): the chargeback was blocked before it
#: happened, or resolved with a refund, whose own event then says so.
DISPUTE_WON_STATUSES = frozenset({"won", "warning_closed", "prevented"})
#: The payment state that makes a session a purchase. Stripe would also let
#: `no_payment_required` (a 100 % discount) be fulfilled, but the contract
#: (design/desired-state.md, "Inputs") counts only money received.
FULFILLABLE_PAYMENT_STATUSES = frozenset({"paid"})
MAX_PAGE_SIZE = 100
#: From this many sessions to read on, `sessions_by_id` tries the list first.
LIST_FOR_SESSIONS = 3

T = TypeVar("T")
#: The params of the list endpoints `_iter_list` pages through (all take `starting_after`).
ListParams = TypeVar(
    "ListParams",
    "SessionListParams",
    "EventListParams",
    "SessionLineItemListParams",
    "ChargeListParams",
    "DisputeListParams",
)
TroubleKind = Literal["refunded", "disputed"]

# Secret/restricted/publishable keys, and the masked form Stripe echoes in 401/403s.
_KEY_PATTERN = re.compile(r"\b(?:sk|rk|pk)_[A-Za-z0-9_*]+|\*{4,}[A-Za-z0-9]*")


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LineItem:
    """One purchased line: which price/product, how many."""

    id: str
    price_id: str | None
    product_id: str | None
    quantity: int | None
    description: str | None


@dataclass(frozen=True)
class CheckoutSession:
    """A Checkout Session with all its line items (never a truncated list)."""

    id: str
    created: int
    status: str
    payment_status: str
    mode: str
    email: str | None
    name: str | None
    line_items: tuple[LineItem, ...]
    metadata: dict[str, str] = field(default_factory=dict, hash=False)
    #: The PaymentIntent (`pi_...`) of a payment-mode session once completed:
    #: the key its refunds and disputes (`PaymentTrouble`) are found by.
    payment_intent: str | None = None

    @property
    def is_paid(self) -> bool:
        """Complete with the money in: the only state that is a purchase."""
        return self.status == "complete" and self.payment_status in FULFILLABLE_PAYMENT_STATUSES


@dataclass(frozen=True)
class Event:
    """A checkout event; `session` is the session as fetched during iteration."""

    id: str
    type: str
    created: int
    session: CheckoutSession


@dataclass(frozen=True)
class PaymentTrouble:
    """What Stripe shows against a purchase's payment: a refund or a dispute.

    Matched to a session by `payment_intent` (`CheckoutSession.payment_intent`);
    the session itself never changes (it stays `paid`). Rule 17 acts on a full
    refund or a dispute; a partial refund (`full=False`) changes nothing.

    - kind `refunded`: `full` is Stripe's own `charge.refunded` (the whole
      captured amount is back); `amount` is the amount refunded so far.
    - kind `disputed`: `full` is always True (a charge is disputed or not);
      `amount` is the disputed amount, `dispute_status` Stripe's status
      (None when unknown). Stripe keeps the charge `disputed` after a dispute
      is won, so a won one is still reported: see `dispute_won`.

    `created` dates what is shown: the event's time for a refund read from
    events, the dispute's creation for a dispute, and for a refund found by
    a full run the charge's creation (a charge carries no refund time).
    """

    payment_intent: str
    kind: TroubleKind
    full: bool
    created: int
    charge_id: str
    amount: int | None = None
    dispute_id: str | None = None
    dispute_status: str | None = None

    @property
    def dispute_won(self) -> bool:
        """A dispute that ended with the money kept (won, or an inquiry closed)."""
        return self.kind == "disputed" and self.dispute_status in DISPUTE_WON_STATUSES


@dataclass(frozen=True)
class TroubleEvent:
    """A refund or dispute event; `trouble` is what its object showed then."""

    id: str
    type: str
    created: int
    trouble: PaymentTrouble


@dataclass(frozen=True)
class Price:
    id: str
    active: bool
    product: str | None


@dataclass(frozen=True)
class Product:
    id: str
    active: bool
    name: str | None


# -- the SDK's transport ---------------------------------------------------------------


class _ServiceHTTPClient(stripe.HTTPClient):
    """Lets the SDK send through `ServiceHTTP` (retries, limits, counters, timeouts)."""

    name = "syncctl"

    def __init__(self, http: ServiceHTTP) -> None:
        super().__init__()
        self._http = http

    def request(  # type: ignore[override]  # stripe types the body as str; it is bytes
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        content = post_data.encode() if isinstance(post_data, str) else post_data
        # Returns the final response of any status (the SDK classifies errors);
        # transport failures raise syncctl errors, which pass through the SDK.
        response = self._http.send_raw(method, url, headers=dict(headers or {}), content=content)
        return response.content, response.status_code, response.headers

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        content, status, headers_out = self.request(method, url, headers, post_data)
        return io.BytesIO(content), status, headers_out

    def close(self) -> None:
        """Nothing to do: the `ServiceHTTP` belongs to `StripeAPI`, which closes it."""


# -- defensive parsing -----------------------------------------------------------------


def _as_dict(value: Any, what: str) -> dict[str, Any]:
    if isinstance(value, stripe.StripeObject):
        return value.to_dict()
    if isinstance(value, dict):
        return value
    raise BadResponse(SERVICE, f"{what}: expected a JSON object, got {type(value).__name__}")


def _str(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise BadResponse(SERVICE, f"{what}: field '{key}' is missing or not a string")
    return value


def _int(obj: Mapping[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadResponse(SERVICE, f"{what}: field '{key}' is missing or not an integer")
    return value


def _bool(obj: Mapping[str, Any], key: str, what: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise BadResponse(SERVICE, f"{what}: field '{key}' is missing or not a boolean")
    return value


def _opt_str(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadResponse(SERVICE, f"{what}: field '{key}' is not a string")
    return value.strip() or None


def _ref_id(value: Any, key: str, what: str) -> str | None:
    """An id that may come as a string or as an expanded object."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    raise BadResponse(SERVICE, f"{what}: field '{key}' is neither an id nor an object")


def _parse_line_item(raw: Any, what: str) -> LineItem:
    if not isinstance(raw, dict):
        raise BadResponse(SERVICE, f"{what}: a line item is not an object")
    item_id = _str(raw, "id", f"{what}, line item")
    where = f"{what}, line item {item_id}"
    price = raw.get("price")
    price_id = _ref_id(price, "price", where)
    product_id = (
        _ref_id(price.get("product"), "price.product", where) if isinstance(price, dict) else None
    )
    quantity = raw.get("quantity")
    if quantity is not None and (not isinstance(quantity, int) or isinstance(quantity, bool)):
        raise BadResponse(SERVICE, f"{where}: field 'quantity' is not an integer")
    return LineItem(
        id=item_id,
        price_id=price_id,
        product_id=product_id,
        quantity=quantity,
        description=_opt_str(raw, "description", where),
    )


def _contact(raw: Mapping[str, Any], what: str) -> tuple[str | None, str | None]:
    """(email, name): customer_details first, the prefilled customer_email second."""
    details = raw.get("customer_details")
    email = name = None
    if isinstance(details, dict):
        email = _opt_str(details, "email", f"{what}, customer_details")
        name = _opt_str(details, "name", f"{what}, customer_details")
    elif details is not None:
        raise BadResponse(SERVICE, f"{what}: field 'customer_details' is not an object")
    return email or _opt_str(raw, "customer_email", what), name


def _metadata(raw: Mapping[str, Any], what: str) -> dict[str, str]:
    value = raw.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadResponse(SERVICE, f"{what}: field 'metadata' is not an object")
    return {str(k): str(v) for k, v in value.items()}


def _opt_int(obj: Mapping[str, Any], key: str, what: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadResponse(SERVICE, f"{what}: field '{key}' is not an integer")
    return value


def _refund_of(raw: Mapping[str, Any], what: str, created: int | None) -> PaymentTrouble | None:
    """A charge's refunds as a trouble: None when nothing is refunded or no PaymentIntent.

    Stripe's `refunded` flag decides `full` (it also covers a partial
    capture refunded in full); without it, `amount_refunded >= amount`.
    """
    charge_id = _str(raw, "id", what)
    what = f"charge {charge_id}"
    intent = _ref_id(raw.get("payment_intent"), "payment_intent", what)
    if intent is None:
        return None  # not a PaymentIntent payment, so no Checkout purchase
    refunded = _opt_int(raw, "amount_refunded", what)
    amount = _opt_int(raw, "amount", what)
    flag = raw.get("refunded")
    if isinstance(flag, bool):
        full = flag
    elif refunded is not None and amount is not None:
        full = 0 < amount <= refunded
    else:
        raise BadResponse(SERVICE, f"{what}: neither 'refunded' nor 'amount_refunded' is given")
    if not full and not refunded:
        return None
    return PaymentTrouble(
        payment_intent=intent,
        kind="refunded",
        full=full,
        created=_int(raw, "created", what) if created is None else created,
        charge_id=charge_id,
        amount=refunded,
    )


def _event_object(kind: str) -> str | None:
    """The `data.object` kind an event type carries, for the types syncctl reads."""
    if kind.startswith("checkout.session."):
        return "checkout.session"
    if kind.startswith("charge.dispute."):
        return "dispute"
    if kind == "charge.refunded":
        return "charge"
    return None


def _no_lookup(charge_id: str) -> str | None:
    return None


def _dispute_of(
    raw: Mapping[str, Any],
    what: str,
    intent_of: Callable[[str], str | None],
    *,
    known_intent: str | None = None,
) -> PaymentTrouble | None:
    """A dispute as a trouble; None when its charge has no PaymentIntent.

    `charge` and `payment_intent` may be ids or expanded objects. A dispute
    whose `payment_intent` is null or absent has it looked up on its charge
    through `intent_of` (Stripe's own examples show disputes with a null
    one; whether a PaymentIntent charge's dispute can is UNCONFIRMED, and a
    missed dispute would keep a VIP purchase alive).
    """
    dispute_id = _str(raw, "id", what)
    what = f"dispute {dispute_id}"
    charge = raw.get("charge")
    charge_id = _ref_id(charge, "charge", what)
    if charge_id is None:
        raise BadResponse(SERVICE, f"{what}: field 'charge' is missing")
    intent = known_intent or _ref_id(raw.get("payment_intent"), "payment_intent", what)
    if intent is None and isinstance(charge, dict):
        intent = _ref_id(charge.get("payment_intent"), "charge.payment_intent", what)
    if intent is None and not isinstance(charge, dict):
        intent = intent_of(charge_id)
    if intent is None:
        return None
    return PaymentTrouble(
        payment_intent=intent,
        kind="disputed",
        full=True,
        created=_int(raw, "created", what),
        charge_id=charge_id,
        amount=_opt_int(raw, "amount", what),
        dispute_id=dispute_id,
        dispute_status=_opt_str(raw, "status", what),
    )


# -- the client ------------------------------------------------------------------------


class StripeAPI(VendorClient):
    """Read-only access to the Checkout data syncctl reconciles from."""

    def __init__(
        self,
        api_base: str,
        api_key: str,
        *,
        stats: CallStats | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        max_concurrency: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # A key pasted with a newline would make an illegal header: strip it.
        api_key = (api_key or "").strip()
        if not api_key:
            raise AuthRejected(SERVICE, "no API key configured", hint="set STRIPE_API_KEY")
        api_key = header_credential(api_key, "STRIPE_API_KEY", SERVICE)
        base = api_base.rstrip("/")
        # The SDK appends "/v1/..." itself; tolerate a base URL that already has it.
        base = base.removesuffix("/v1")
        self.api_base = base
        self._key = api_key
        self._http = ServiceHTTP(
            SERVICE,
            base,
            timeout=timeout,
            retry=retry,
            stats=stats,
            max_concurrency=max_concurrency,
            transport=transport,
        )
        self._sdk = stripe.StripeClient(
            api_key,
            base_addresses={"api": base},
            # Explicitly 0: ServiceHTTP already retries 429/5xx/connection errors
            # with backoff and honours Retry-After, which the SDK's own retry
            # loop ignores; two retry layers would multiply the attempts.
            max_network_retries=0,
            http_client=_ServiceHTTPClient(self._http),
        )

    # -- public API --------------------------------------------------------------

    def check_access(self) -> None:
        """One cheap read (a 1-session list) so `doctor` can test key and URL."""
        page = self._call(
            "listing checkout sessions",
            lambda: self._sdk.v1.checkout.sessions.list(params={"limit": 1}),
        )
        body = _as_dict(page, "checkout session list")
        if not isinstance(body.get("data"), list):
            raise BadResponse(SERVICE, "checkout session list: field 'data' is not a list")

    def iter_completed_sessions(
        self, created_gte: int | None = None, *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[CheckoutSession]:
        """Completed sessions created at or after `created_gte`, newest first, lazily.

        Includes complete-but-unpaid ones (check `is_paid`). Line items are
        complete: an embedded list with `has_more` is paged to its end.
        """
        params: SessionListParams = {
            "status": "complete",
            "limit": max(1, min(MAX_PAGE_SIZE, page_size)),
            "expand": ["data.line_items"],
        }
        if created_gte is not None:
            params["created"] = {"gte": int(created_gte)}
        for raw in self._iter_list(
            "listing checkout sessions",
            lambda p: self._get("/v1/checkout/sessions", p),
            params,
        ):
            yield self._session_from(raw, "a listed checkout session")

    def iter_sessions_for_email(
        self, email: str, *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[CheckoutSession]:
        """Completed sessions whose `customer_details.email` is `email`, newest first.

        For `syncctl status`: Stripe filters the list by
        `customer_details[email]`; the match is Stripe's (compare the
        address as the buyer typed it), so callers that need a
        case-insensitive view ask for each spelling they know.
        """
        wanted = email.strip()
        if not wanted:
            raise InvalidRequest(SERVICE, "an email address is required")
        params: SessionListParams = {
            "status": "complete",
            "customer_details": {"email": wanted},
            "limit": max(1, min(MAX_PAGE_SIZE, page_size)),
            "expand": ["data.line_items"],
        }
        for raw in self._iter_list(
            "listing checkout sessions by email",
            lambda p: self._get("/v1/checkout/sessions", p),
            params,
        ):
            yield self._session_from(raw, "a listed checkout session")

    def session_for_payment(self, payment_intent: str) -> CheckoutSession | None:
        """The session whose payment is `payment_intent` (None if no session has it).

        For a `PaymentTrouble` whose session the run has not read (an
        incremental run sees the refund, not the old checkout): one call,
        Stripe's own `payment_intent` filter on the sessions list, with the
        line items expanded. None for a PaymentIntent made outside Checkout.
        """
        if not payment_intent:
            raise InvalidRequest(SERVICE, "a payment intent id is required")
        params: SessionListParams = {
            "payment_intent": payment_intent,
            "limit": 1,
            "expand": ["data.line_items"],
        }
        page = self._call(
            f"listing the checkout session of {payment_intent}",
            lambda: self._get("/v1/checkout/sessions", params),
        )
        data = page.get("data")
        if not isinstance(data, list):
            raise BadResponse(SERVICE, "checkout session list: field 'data' is not a list")
        if not data:
            return None
        return self._session_from(_as_dict(data[0], "a listed checkout session"), "a session")

    def get_session(self, session_id: str) -> CheckoutSession:
        """One session, with all its line items."""
        if not session_id:
            raise InvalidRequest(SERVICE, "a checkout session id is required")
        raw = self._call(
            f"reading checkout session {session_id}",
            lambda: self._get(
                f"/v1/checkout/sessions/{quote(session_id, safe='')}", {"expand": ["line_items"]}
            ),
        )
        return self._session_from(
            _as_dict(raw, f"checkout session {session_id}"), f"checkout session {session_id}"
        )

    def iter_session_events(
        self,
        created_gte: int,
        types: Iterable[str] = DEFAULT_EVENT_TYPES,
        *,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[Event]:
        """Checkout events since `created_gte`, newest first.

        Stripe keeps events for 30 days only: older windows come back empty,
        so use `iter_completed_sessions` for a full refresh. Event payloads
        never include line items, so each event's session is read again with
        them (`sessions_by_id`: a few list pages rather than one call each).
        To learn refunds and disputes in the same calls, read
        `iter_purchase_events` instead (not as well).
        """
        wanted = list(types)
        for name in wanted:
            if not name.startswith("checkout.session."):
                raise ValueError(f"not a checkout session event type: {name}")
        for item in self._iter_events(created_gte, wanted, page_size):
            if isinstance(item, Event):
                yield item

    def iter_purchase_events(
        self, created_gte: int, *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[Event | TroubleEvent]:
        """Checkout, refund and dispute events since `created_gte`, newest first.

        One paged read of `/v1/events` whose `types[]` holds both the checkout
        events and `TROUBLE_EVENT_TYPES`, so an incremental run learns new
        purchases and what happened to old ones with the same calls and one
        cursor (the newest `created` of either kind). It replaces
        `iter_session_events`: `Event`s come exactly as from there, and a
        `TroubleEvent` needs no further call (its object is the charge or the
        dispute; a dispute that does not name its PaymentIntent costs one read
        of its charge). A partial refund comes as `full=False`. Payments without a
        PaymentIntent (no Checkout purchase) are skipped. Newest first means
        a payment's first trouble of each kind is its latest state.
        """
        return self._iter_events(created_gte, list(PURCHASE_EVENT_TYPES), page_size)

    def iter_payment_troubles(
        self, since: int | None = None, *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[PaymentTrouble]:
        """Fully refunded or disputed payments whose charge was created at or after `since`.

        For full runs, where events (kept 30 days) are not enough: one paged
        read of `/v1/charges` (100 a page, never a call per session), yielding
        each fully refunded charge as it is read, newest first; then, only if
        some charge is `disputed`, one paged read of `/v1/disputes` from the
        same `since` for their statuses, yielding one `disputed` item per
        disputed charge (its newest dispute; status None if none is listed).
        Partial refunds are not yielded (they change nothing), nor charges
        without a PaymentIntent.
        """
        size = max(1, min(MAX_PAGE_SIZE, page_size))
        charges: ChargeListParams = {"limit": size}
        if since is not None:
            charges["created"] = {"gte": int(since)}
        disputed: dict[str, tuple[str, int]] = {}  # charge id -> (payment intent, created)
        for raw in self._iter_list(
            "listing charges", lambda p: self._get("/v1/charges", p), charges
        ):
            refund = _refund_of(raw, "a listed charge", None)
            if refund is not None and refund.full:
                yield refund
            if raw.get("disputed") is True:
                charge_id = _str(raw, "id", "a listed charge")
                intent = _ref_id(raw.get("payment_intent"), "payment_intent", f"charge {charge_id}")
                if intent is not None:
                    disputed[charge_id] = (intent, _int(raw, "created", f"charge {charge_id}"))
        if not disputed:
            return
        disputes: DisputeListParams = {"limit": size}
        if since is not None:
            disputes["created"] = {"gte": int(since)}  # a dispute follows its charge
        for raw in self._iter_list(
            "listing disputes", lambda p: self._get("/v1/disputes", p), disputes
        ):
            of_charge = _ref_id(raw.get("charge"), "charge", "a listed dispute")
            if of_charge is None or of_charge not in disputed:
                continue
            known, _ = disputed.pop(of_charge)
            # The charge named its PaymentIntent: no lookup, whatever the dispute says.
            trouble = _dispute_of(raw, "a listed dispute", _no_lookup, known_intent=known)
            if trouble is not None:
                yield trouble
        for left, (known, created) in disputed.items():
            yield PaymentTrouble(
                payment_intent=known,
                kind="disputed",
                full=True,
                created=created,
                charge_id=left,
            )

    def check_payment_access(self) -> None:
        """One-item reads of charges and disputes, so `doctor` can test a restricted key."""
        for path in ("/v1/charges", "/v1/disputes"):
            body = self._call(
                f"listing {path[4:]}", functools.partial(self._get, path, {"limit": 1})
            )
            if not isinstance(body.get("data"), list):
                raise BadResponse(SERVICE, f"GET {path}: field 'data' is not a list")

    def sessions_by_id(self, created: Mapping[str, int | None]) -> dict[str, CheckoutSession]:
        """Sessions with their line items, given their ids and (if known) creation times.

        Sessions created close together are most cheaply read from the list of
        completed sessions since the oldest of them (100 a page, line items
        expanded). The list is read for at most a quarter as many pages as
        there are sessions, and whatever it did not reach is read one by one:
        at worst a quarter more calls than reading them all one by one.
        """
        found: dict[str, CheckoutSession] = {}
        times = [t for t in created.values() if t is not None]
        if len(created) >= LIST_FOR_SESSIONS and times:
            budget = max(1, len(created) // 4) * MAX_PAGE_SIZE
            for listed, session in enumerate(self.iter_completed_sessions(min(times)), 1):
                if session.id in created:
                    found[session.id] = session
                if len(found) == len(created) or listed >= budget:
                    break
        for session_id in created:
            if session_id not in found:
                found[session_id] = self.get_session(session_id)
        return found

    def get_price(self, price_id: str) -> Price:
        """A price (for `doctor`: do the configured VIP ids exist, are they active?)."""
        raw = _as_dict(
            self._call(f"reading price {price_id}", lambda: self._sdk.v1.prices.retrieve(price_id)),
            f"price {price_id}",
        )
        what = f"price {price_id}"
        return Price(
            id=_str(raw, "id", what),
            active=_bool(raw, "active", what),
            product=_ref_id(raw.get("product"), "product", what),
        )

    def get_product(self, product_id: str) -> Product:
        """A product (for `doctor`)."""
        raw = _as_dict(
            self._call(
                f"reading product {product_id}",
                lambda: self._sdk.v1.products.retrieve(product_id),
            ),
            f"product {product_id}",
        )
        what = f"product {product_id}"
        return Product(
            id=_str(raw, "id", what),
            active=_bool(raw, "active", what),
            name=_opt_str(raw, "name", what),
        )

    # -- internals ---------------------------------------------------------------

    def _iter_events(
        self, created_gte: int, types: list[str], page_size: int
    ) -> Iterator[Event | TroubleEvent]:
        """The events of `types` in one paged read; sessions re-read in bulk at the end."""
        params: EventListParams = {
            "types": types,
            "created": {"gte": int(created_gte)},
            "limit": max(1, min(MAX_PAGE_SIZE, page_size)),
        }
        read: list[tuple[str, str, int, str] | TroubleEvent] = []
        sessions: dict[str, CheckoutSession] = {}
        missing: dict[str, int | None] = {}  # session id -> its `created`, when the event says
        intents: dict[str, str | None] = {}  # charge id -> payment intent, read once each
        for raw in self._iter_list("listing events", lambda p: self._get("/v1/events", p), params):
            event_id = _str(raw, "id", "an event")
            what = f"event {event_id}"
            kind = _str(raw, "type", what)
            created = _int(raw, "created", what)
            data = raw.get("data")
            obj = data.get("object") if isinstance(data, dict) else None
            expected = _event_object(kind)
            if expected is None:
                raise BadResponse(SERVICE, f"{what}: type {kind!r} was not asked for")
            if not isinstance(obj, dict) or obj.get("object") != expected:
                raise BadResponse(SERVICE, f"{what}: 'data.object' is not a {expected}")
            where = f"{what}, data.object"
            if expected == "charge":
                trouble = _refund_of(obj, where, created)
            elif expected == "dispute":
                trouble = _dispute_of(obj, where, lambda cid: self._charge_intent(cid, intents))
            else:
                session_id = _str(obj, "id", where)
                read.append((event_id, kind, created, session_id))
                embedded = obj.get("line_items")
                if isinstance(embedded, dict) and embedded.get("has_more") is False:
                    sessions[session_id] = self._session_from(obj, where)
                elif session_id not in sessions:
                    stamp = obj.get("created")
                    missing[session_id] = stamp if isinstance(stamp, int) else None
                continue
            if trouble is not None:
                read.append(TroubleEvent(id=event_id, type=kind, created=created, trouble=trouble))
        sessions.update(self.sessions_by_id(missing))
        for item in read:
            if isinstance(item, TroubleEvent):
                yield item
            else:
                event_id, kind, created, session_id = item
                yield Event(id=event_id, type=kind, created=created, session=sessions[session_id])

    def _charge_intent(self, charge_id: str, cache: dict[str, str | None]) -> str | None:
        """The PaymentIntent of a charge, read once (a dispute that did not say)."""
        if charge_id not in cache:
            raw = self._call(
                f"reading charge {charge_id}",
                lambda: self._get(f"/v1/charges/{quote(charge_id, safe='')}", {}),
            )
            cache[charge_id] = _ref_id(
                raw.get("payment_intent"), "payment_intent", f"charge {charge_id}"
            )
        return cache[charge_id]

    def _session_from(self, raw: dict[str, Any], what: str) -> CheckoutSession:
        session_id = _str(raw, "id", what)
        what = f"checkout session {session_id}"
        email, name = _contact(raw, what)
        return CheckoutSession(
            id=session_id,
            created=_int(raw, "created", what),
            status=_str(raw, "status", what),
            payment_status=_str(raw, "payment_status", what),
            mode=_str(raw, "mode", what),
            email=email,
            name=name,
            line_items=self._line_items(session_id, raw.get("line_items"), what),
            metadata=_metadata(raw, what),
            payment_intent=_ref_id(raw.get("payment_intent"), "payment_intent", what),
        )

    def _line_items(self, session_id: str, embedded: Any, what: str) -> tuple[LineItem, ...]:
        """All line items: the embedded first page, then the rest from the endpoint."""
        items: list[LineItem] = []
        if embedded is not None:
            if not isinstance(embedded, dict) or not isinstance(embedded.get("data"), list):
                raise BadResponse(SERVICE, f"{what}: field 'line_items' is not a list object")
            items = [_parse_line_item(raw, what) for raw in embedded["data"]]
            has_more = embedded.get("has_more")
            if not isinstance(has_more, bool):
                raise BadResponse(SERVICE, f"{what}: field 'line_items.has_more' is missing")
            if not has_more:
                return tuple(items)
        params: SessionLineItemListParams = {"limit": MAX_PAGE_SIZE}
        if items:
            params["starting_after"] = items[-1].id
        for raw in self._iter_list(
            f"listing line items of {session_id}",
            lambda p: self._get(
                f"/v1/checkout/sessions/{quote(session_id, safe='')}/line_items", p
            ),
            params,
        ):
            items.append(_parse_line_item(raw, what))
        return tuple(items)

    def _iter_list(
        self,
        what: str,
        fetch: Callable[[ListParams], Any],
        params: ListParams,
    ) -> Iterator[dict[str, Any]]:
        """Objects of a Stripe list, one page at a time (cursor: the last id)."""
        params = params.copy()
        seen_cursor: str | None = params.get("starting_after")
        while True:
            page = _as_dict(self._call(what, lambda: fetch(params.copy())), what)
            data = page.get("data")
            has_more = page.get("has_more")
            if not isinstance(data, list):
                raise BadResponse(SERVICE, f"{what}: field 'data' is missing or not a list")
            if not isinstance(has_more, bool):
                raise BadResponse(SERVICE, f"{what}: field 'has_more' is missing")
            for raw in data:
                if not isinstance(raw, dict):
                    raise BadResponse(SERVICE, f"{what}: a list entry is not an object")
                yield raw
            if not has_more:
                return
            cursor = data[-1].get("id") if data else None
            if not isinstance(cursor, str) or cursor == seen_cursor:
                raise BadResponse(
                    SERVICE, f"{what}: 'has_more' is true but the page has no new cursor"
                )
            params["starting_after"] = seen_cursor = cursor

    def _get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """A GET through the SDK (auth, version, errors), answered as plain JSON.

        The typed methods build a StripeObject tree for every answer: for a
        page of 100 sessions with line items that costs ~200 ms of CPU, most
        of a full read's time. The data is the same.
        """
        response = self._sdk.raw_request("get", path, **params)
        return _as_dict(response.data, f"GET {path}")

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run an SDK call; map its exceptions onto syncctl's."""
        try:
            return fn()
        except ServiceError:
            raise
        except stripe.StripeError as exc:
            raise self._map_error(exc, what) from None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # The SDK choking on an answer that is not Stripe's shape.
            raise BadResponse(
                SERVICE, f"{what}: unexpected answer ({type(exc).__name__})"
            ) from None

    def _redact(self, text: str) -> str:
        if self._key:
            text = text.replace(self._key, "[redacted]")
        return _KEY_PATTERN.sub("[redacted key]", text)

    def _map_error(self, exc: stripe.StripeError, what: str) -> ServiceError:
        status = exc.http_status
        detail = self._redact(" ".join(str(exc.user_message or "").split()))[:300]
        text = f"{what} failed" + (f" (HTTP {status})" if status else "")
        text += f": {detail}" if detail else ""
        # By status too: a proxy's 401/403 has no Stripe body, so the SDK raises APIError.
        if isinstance(exc, stripe.AuthenticationError) or status == 401:
            return AuthRejected(
                SERVICE,
                text,
                hint="check STRIPE_API_KEY (a secret or restricted key of this account and mode)",
                status=status or 401,
            )
        if isinstance(exc, stripe.PermissionError) or status == 403:
            return AuthRejected(
                SERVICE,
                text,
                hint="give the restricted key read access to Checkout Sessions, Events, "
                "Charges, Disputes, Prices and Products",
                status=status or 403,
            )
        if isinstance(exc, stripe.RateLimitError):
            return RateLimited(
                SERVICE,
                text,
                hint="the next run retries; lower concurrency if this repeats",
                retry_after=_retry_after(exc.headers),
            )
        if isinstance(exc, stripe.IdempotencyError):
            return Conflict(SERVICE, text, status=status)
        if isinstance(exc, stripe.InvalidRequestError):
            if status == 404:
                return NotFound(SERVICE, text, status=status)
            return InvalidRequest(SERVICE, text, status=status)
        if isinstance(exc, stripe.APIConnectionError):
            return Unavailable(SERVICE, f"{what}: cannot reach Stripe", hint="the next run retries")
        if status is None or status < 400:
            # The SDK's "Invalid response body": not JSON (a proxy page, a cut body).
            return BadResponse(
                SERVICE,
                f"{what}: answered HTTP {status or '?'} with a body that is not Stripe's JSON",
                hint="check [stripe] api_base points at the Stripe API",
                status=status,
            )
        if status >= 500:
            return Unavailable(SERVICE, text, hint="the next run retries", status=status)
        return InvalidRequest(SERVICE, text, status=status)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
