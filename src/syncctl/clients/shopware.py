"""Shopware 6 Admin API client: the VIP promotion's individual codes (rule 1).

Why this module is more than a few HTTP calls (api-notes.md section 4):

- Auth is OAuth client_credentials with a 10-minute token and no refresh
  token. The token is cached, renewed shortly before it runs out, and renewed
  once more when any call answers 401 (the call is then repeated). Renewal
  holds a lock, so concurrent callers share one token request.
- The Admin API answers JSON:API unless the request says
  `Accept: application/json`; we always send it (and still read JSON:API
  `attributes` if a proxy dropped the header).
- Adding one chosen code is a plain create: `POST /api/promotion-individual-code`.
  Its id is client-generated and deterministic (md5 of the code), so a
  repeated create cannot mint a second row. Shopware has no "already exists"
  answer for it: a repeated id gives 400 FRAMEWORK__WRITE_TYPE_INTEND_ERROR,
  a code taken under another id gives a raw database error (500, SQLSTATE
  1062), and a proxy may say 409. Every such answer, and every answer whose
  outcome is unclear, is settled by looking the code up: the same promotion
  means success, another promotion means `Conflict`.
- The code column is UNIQUE across all promotions with a case-insensitive
  collation, so `VIP-ab` and `VIP-AB` are one code to Shopware (and to a
  buyer typing it). Look-ups compare codes the same way.
- A code is redeemed when an order used it: Shopware's
  PromotionIndividualCodeRedeemer then REPLACES its `payload` with
  `{orderId, customerId, customerName}` (`IndividualCode.redeemed`). The
  storefront accepts an individual code only while its payload is null
  (PermittedIndividualCodePromotions: "a payload of null means, they have
  not yet been redeemed"), inside the promotion's dates, with the promotion
  active and both code flags on (`redeemable`). api-notes 4.6.

Retrying after `OutcomeUnknown`: `add_code` already looks the code up once
when a create times out or the connection drops. If the code is still not
visible it re-raises `OutcomeUnknown`; calling `add_code` (or `ensure_code`)
again later is safe, because the deterministic id and the duplicate handling
above turn a repeat into "already there".
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeGuard

import httpx

from syncctl.clients import VendorClient, is_header_safe
from syncctl.errors import (
    AuthRejected,
    BadResponse,
    Conflict,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ServiceError,
    Unavailable,
)
from syncctl.net.http import CallStats, RetryPolicy, ServiceHTTP, expect_dict, parse_json

SERVICE = "shopware"
API_PREFIX = "/api"
TOKEN_PATH = "/api/oauth/token"
CODE_ENTITY_PATH = "/api/promotion-individual-code"
CODE_SEARCH_PATH = "/api/search/promotion-individual-code"
#: Shopware's default `shopware.api.max_limit`; a larger page is a 400.
MAX_PAGE_SIZE = 500
#: Renew the token this long before Shopware says it expires (clock skew,
#: request time), but never sooner than half its lifetime.
TOKEN_MARGIN = 30.0
#: `expires_in` when the token answer lacks it (Shopware's fixed lifetime).
DEFAULT_TOKEN_TTL = 600
#: A plain 429 on the token request asking for at most this many seconds is
#: waited out once within the run.
TOKEN_RETRY_MAX = 10.0
CREDENTIALS_HINT = (
    "check SHOPWARE_CLIENT_ID and SHOPWARE_CLIENT_SECRET (the access key id and "
    "secret access key of an active integration, Settings > System > Integrations)"
)
PROMOTION_HINT = "check [shopware] vip_promotion_id (the promotion's 32-hex id in the admin URL)"
#: Where an operator fixes a promotion's flags and dates.
PROMOTION_SCREEN = "Marketing > Promotions"
#: The payload key Shopware's redeemer writes when an order uses a code.
REDEEMED_KEY = "orderId"
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
#: The MySQL unique-key error Shopware passes through for a taken code or id.
_DUPLICATE_MARKERS = ("1062", "duplicate entry", "duplicate", "already exists", "already in use")
_WRITE_TYPE_INTEND = "FRAMEWORK__WRITE_TYPE_INTEND_ERROR"
_FK_MARKERS = ("1452", "foreign key constraint fails")


def code_id(code: str) -> str:
    """The deterministic entity id of an individual code: md5 of the code, 32 hex.

    Shopware accepts any 32-hex id from clients (api-notes 4.4); deriving it
    from the code makes a repeated create collide instead of adding a row.
    """
    return hashlib.md5(code.encode("utf-8"), usedforsecurity=False).hexdigest()


def code_key(code: str) -> str:
    """How Shopware's `utf8mb4_unicode_ci` column compares codes, approximately.

    Case- and accent-insensitive, trailing spaces ignored (PAD SPACE).
    """
    if code.isascii():
        return code.casefold().rstrip(" ")
    decomposed = unicodedata.normalize("NFKD", code)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold().rstrip(" ")


@dataclass(frozen=True)
class IndividualCode:
    """One row of `promotion_individual_code`."""

    id: str
    promotion_id: str
    code: str
    #: Free JSON object Shopware stores with the code (None when unset). An
    #: empty object comes back from Shopware as `[]`; it is read as `{}`.
    payload: Mapping[str, Any] | None = field(default=None, hash=False)

    @property
    def redeemed(self) -> bool:
        """An order used the code: Shopware's redeemer wrote `orderId` into the payload.

        Only that key counts. A payload syncctl (or anyone) wrote at creation
        is not a redemption, although the storefront refuses such a code all
        the same (it accepts only a null payload; api-notes 4.6).
        """
        return self.payload is not None and bool(self.payload.get(REDEEMED_KEY))

    @property
    def blocked(self) -> bool:
        """Not redeemed, yet the checkout refuses it: it carries a payload of its own
        (the `stripe_session` earlier syncctl versions wrote)."""
        return self.payload is not None and not self.redeemed

    @property
    def order_id(self) -> str | None:
        """The order that redeemed the code, when it was redeemed."""
        value = self.payload.get(REDEEMED_KEY) if self.payload is not None else None
        return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Promotion:
    """The promotion fields that decide whether its individual codes can be redeemed."""

    id: str
    name: str | None
    active: bool
    use_codes: bool
    use_individual_codes: bool
    individual_code_pattern: str | None
    #: Shopware's validity window (UTC); None on either side means open.
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    #: Orders that may use the promotion at all (None: unlimited), and how
    #: many did: at the limit the cart drops the promotion (isOrderCountValid).
    max_redemptions_global: int | None = None
    order_count: int = 0

    @property
    def accepts_individual_codes(self) -> bool:
        """Individual codes are honoured only with both flags on (api-notes 4.2)."""
        return self.active and self.use_codes and self.use_individual_codes

    @property
    def label(self) -> str:
        """How operators recognise it: its name and id."""
        return f"{self.name!r} ({self.id})" if self.name else self.id

    def in_dates(self, now: datetime) -> bool:
        """Inside `validFrom <= now < validUntil`, as Shopware's ActiveDateRange filter."""
        now = _utc(now)
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.valid_until is None or now < self.valid_until


def promotion_problems(promotion: Promotion, now: datetime) -> list[tuple[str, str]]:
    """(problem, fix) for each reason a buyer could not redeem a new code now; [] when none.

    What Shopware's cart checks for an individual code
    (PermittedIndividualCodePromotions: active, ActiveDateRange, useCodes,
    useIndividualCodes; then isOrderCountValid). Not checked: the sales
    channel assignment and the discounts, which the promotion read does not
    include.
    """
    now = _utc(now)
    found: list[tuple[str, str]] = []
    if not promotion.active:
        found.append(("it is not active", "set it active"))
    if promotion.valid_from is not None and now < promotion.valid_from:
        found.append(
            (
                f"it starts only at {_when(promotion.valid_from)} (valid from)",
                "move its start date to now or clear it",
            )
        )
    if promotion.valid_until is not None and now >= promotion.valid_until:
        found.append(
            (
                f"it ended at {_when(promotion.valid_until)} (valid until)",
                "move its end date into the future or clear it",
            )
        )
    if not promotion.use_codes or not promotion.use_individual_codes:
        found.append(("it does not use individual codes", "under Codes choose individual codes"))
    limit = promotion.max_redemptions_global
    if limit is not None and limit > 0 and promotion.order_count >= limit:
        found.append(
            (
                f"it was used {promotion.order_count} times, its global maximum",
                "raise or clear its maximum uses",
            )
        )
    return found


def redeemable(
    promotion: Promotion | None, now: datetime, *, promotion_id: str | None = None
) -> str | None:
    """Why a buyer could not redeem a new code of `promotion` now, or None when they could.

    Rule 23: no code is minted or mailed while this says anything. The answer
    is one line naming the promotion, every problem (`promotion_problems`)
    and its fix. Pass `None` for a promotion that does not exist
    (`find_promotion`'s answer), with `promotion_id` to name it.
    """
    if promotion is None:
        which = f"VIP promotion {promotion_id}" if promotion_id else "the VIP promotion"
        return f"{which} does not exist in Shopware: {PROMOTION_HINT}"
    problems = promotion_problems(promotion, now)
    if not problems:
        return None
    return (
        f"VIP promotion {promotion.label}: {'; '.join(p for p, _ in problems)}: its codes "
        f"cannot be redeemed, so no code is minted or mailed. Fix in the Shopware admin "
        f"({PROMOTION_SCREEN}): {', '.join(f for _, f in problems)}"
    )


@dataclass(frozen=True)
class AccessInfo:
    """What `check_access` learnt (for `syncctl doctor`)."""

    version: str | None
    can_read_codes: bool


class _TokenSource:
    """Caches the OAuth access token; one renewal at a time for all threads."""

    def __init__(
        self,
        http: ServiceHTTP,
        client_id: str,
        client_secret: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._client_id = client_id
        self._client_secret = client_secret
        self.clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        #: Set once Shopware refused the credentials: asking again cannot help
        #: within a run, and repeated failures get the client throttled.
        self._refused: tuple[str, int] | None = None

    def __repr__(self) -> str:  # never show the credentials or the token
        return "_TokenSource(<redacted>)"

    def current(self) -> str:
        """A token believed valid, fetching one when none is cached or it is due."""
        with self._lock:
            if self._token is None or self.clock() >= self._renew_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def renew(self, rejected: str) -> str:
        """A new token after `rejected` got a 401, unless another thread renewed already."""
        with self._lock:
            if self._token is not None and self._token != rejected:
                return self._token
            self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _fetch(self, *, retried: bool = False) -> None:
        self._token = None
        if self._refused is not None:
            text, status = self._refused
            raise AuthRejected(SERVICE, text, hint=CREDENTIALS_HINT, status=status)
        response = self._http.request(
            "POST",
            TOKEN_PATH,
            json_body={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
            idempotent=True,
            write=False,
            ok=(400, 401, 429),
        )
        status = response.status_code
        if status in (400, 401):
            self._refused = (
                f"the token request was refused ({status}): {_error_text(response)}",
                status,
            )
            raise AuthRejected(SERVICE, self._refused[0], hint=CREDENTIALS_HINT, status=status)
        if status == 429:
            wait = _throttle_seconds(response)
            if not _auth_throttled(response):
                # A rate limiter in front of the shop (a proxy, a busy
                # moment): wait as asked, once, then try again.
                if retried or wait is None or wait > TOKEN_RETRY_MAX:
                    raise RateLimited(
                        SERVICE,
                        f"token requests are rate limited: {_error_text(response)}",
                        hint="the next run tries again",
                        retry_after=wait,
                    )
                self._http.pause(wait)
                return self._fetch(retried=True)
            # Shopware throttles token requests after repeated failures
            # (FRAMEWORK__AUTH_THROTTLED) and names the wait only in the body.
            raise RateLimited(
                SERVICE,
                f"token requests are throttled: {_error_text(response)}",
                hint="earlier token requests failed; " + CREDENTIALS_HINT,
                retry_after=wait,
            )
        body = expect_dict(SERVICE, parse_json(SERVICE, response), "token answer")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise BadResponse(SERVICE, "token answer: 'access_token' missing or not a string")
        if not is_header_safe(token):  # never echoed: it is a credential
            raise BadResponse(
                SERVICE, "token answer: 'access_token' holds characters no header can carry"
            )
        token_type = body.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise BadResponse(SERVICE, f"token answer: 'token_type' is {token_type!r}, not Bearer")
        ttl = _positive_number(body.get("expires_in"), DEFAULT_TOKEN_TTL)
        self._token = token
        self._renew_at = self.clock() + max(ttl - TOKEN_MARGIN, ttl / 2)


class ShopwareClient(VendorClient):
    """Typed access to the Shopware 6 Admin API of one shop (`{base_url}/api`)."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        stats: CallStats | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        max_concurrency: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        if root.endswith(API_PREFIX):  # tolerate a configured ".../api"
            root = root[: -len(API_PREFIX)]
        self.base_url = root
        self._http = ServiceHTTP(
            SERVICE,
            root,
            headers={"Accept": "application/json"},
            timeout=timeout,
            retry=retry,
            stats=stats,
            max_concurrency=max_concurrency,
            error_message=_error_text,
            transport=transport,
        )
        self._tokens = _TokenSource(self._http, client_id, client_secret)

    # -- public API ---------------------------------------------------------

    def check_access(self) -> AccessInfo:
        """Get a token, read the shop version and try one code search (for `doctor`).

        Raises `AuthRejected` for bad credentials; a missing read permission
        on individual codes is reported as `can_read_codes=False`.
        """
        version: str | None = None
        response = self._call("GET", "/api/_info/version", ok=(403, 404))
        if response.is_success:
            body = parse_json(SERVICE, response)
            if isinstance(body, dict) and isinstance(body.get("version"), str):
                version = body["version"]
        search = self._call(
            "POST",
            CODE_SEARCH_PATH,
            json_body={"limit": 1, "total-count-mode": "none"},
            idempotent=True,
            write=False,
            ok=(403,),
        )
        if search.is_success:
            self._parse_search(search)
        return AccessInfo(version=version, can_read_codes=search.is_success)

    def get_promotion(self, promotion_id: str) -> Promotion:
        """The promotion by id; `NotFound` (with a config hint) when it does not exist."""
        pid = _check_id(promotion_id, "promotion id")
        promotion, missing = self._read_promotion(pid)
        if promotion is None:
            raise NotFound(
                SERVICE,
                f"promotion {pid} does not exist: {missing}",
                hint=PROMOTION_HINT,
                status=404,
            )
        return promotion

    def find_promotion(self, promotion_id: str) -> Promotion | None:
        """The promotion by id (GET /api/promotion/{id}), or None when Shopware has none.

        With `redeemable(promotion, now)` this is rule 23's check before any
        code is minted or mailed. A missing read privilege is `AuthRejected`.
        """
        return self._read_promotion(_check_id(promotion_id, "promotion id"))[0]

    def find_code(self, code: str) -> IndividualCode | None:
        """The individual code equal to `code` (in Shopware's case-insensitive sense), or None."""
        _check_code(code)
        response = self._call(
            "POST",
            CODE_SEARCH_PATH,
            json_body={
                "filter": [{"type": "equals", "field": "code", "value": code}],
                "limit": 1,
                "total-count-mode": "exact",
            },
            idempotent=True,
            write=False,
        )
        _total, codes = self._parse_search(response)
        if not codes:
            return None
        found = codes[0]
        if code_key(found.code) != code_key(code):
            raise BadResponse(
                SERVICE,
                f"a search for code {code!r} answered another code ({found.code!r}); "
                "the filter was ignored",
                hint="check that the base URL points at Shopware itself",
            )
        return found

    def find_codes(self, codes: Iterable[str]) -> dict[str, IndividualCode]:
        """`find_code` for many codes: one `equalsAny` search per MAX_PAGE_SIZE codes.

        Keyed by `code_key`; codes that do not exist are absent.
        """
        asked = list(codes)
        for code in asked:
            _check_code(code)
        by_key = {code_key(c): c for c in asked}
        wanted = sorted(by_key)
        found: dict[str, IndividualCode] = {}
        for start in range(0, len(wanted), MAX_PAGE_SIZE):
            chunk = [by_key[k] for k in wanted[start : start + MAX_PAGE_SIZE]]
            response = self._call(
                "POST",
                CODE_SEARCH_PATH,
                json_body={
                    "filter": [{"type": "equalsAny", "field": "code", "value": chunk}],
                    "limit": len(chunk),
                    "total-count-mode": "none",
                },
                idempotent=True,
                write=False,
            )
            _total, rows = self._parse_search(response)
            keys = set(wanted[start : start + MAX_PAGE_SIZE])
            for row in rows:
                key = code_key(row.code)
                if key not in keys:
                    raise BadResponse(
                        SERVICE,
                        f"a search for {len(chunk)} codes answered another code "
                        f"({row.code!r}); the filter was ignored",
                        hint="check that the base URL points at Shopware itself",
                    )
                found[key] = row
        return found

    def iter_codes(
        self, promotion_id: str, *, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[IndividualCode]:
        """Every individual code of a promotion, sorted by code, one page per request.

        Pages are offsets (`page`/`limit`); a code added while paging can push
        one already seen into the next page, so codes are de-duplicated by id.
        """
        pid = _check_id(promotion_id, "promotion id")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
        seen: set[str] = set()
        page = 1
        previous_first: str | None = None
        while True:
            response = self._call(
                "POST",
                CODE_SEARCH_PATH,
                json_body={
                    "filter": [{"type": "equals", "field": "promotionId", "value": pid}],
                    "sort": [{"field": "code", "order": "ASC"}],
                    "limit": page_size,
                    "page": page,
                    "total-count-mode": "none",
                },
                idempotent=True,
                write=False,
            )
            _total, codes = self._parse_search(response)
            if len(codes) > page_size:
                raise BadResponse(
                    SERVICE, f"code search answered {len(codes)} rows for limit {page_size}"
                )
            if codes and page > 1 and codes[0].id == previous_first:
                raise BadResponse(
                    SERVICE, f"code search page {page} repeats page {page - 1}; paging is ignored"
                )
            for item in codes:
                if item.promotion_id != pid:
                    raise BadResponse(
                        SERVICE,
                        f"code search for promotion {pid} answered a code of {item.promotion_id}",
                    )
                if item.id not in seen:
                    seen.add(item.id)
                    yield item
            if len(codes) < page_size:
                return
            previous_first = codes[0].id
            page += 1

    def add_code(
        self, promotion_id: str, code: str, *, payload: Mapping[str, Any] | None = None
    ) -> IndividualCode:
        """Make sure `code` is an individual code of the promotion; return it.

        Idempotent: when the code exists already in this promotion (an
        earlier try, a crash, a concurrent run), that row is returned. When it
        belongs to another promotion: `Conflict`. See the module docstring for
        what happens after a timeout (`OutcomeUnknown`).
        """
        return self._add(promotion_id, code, payload)[0]

    def create_code(
        self, promotion_id: str, code: str, payload: Mapping[str, Any] | None = None
    ) -> tuple[IndividualCode, bool]:
        """Create without looking first, for a caller that just saw the code missing.

        Shopware refuses a duplicate (500, SQLSTATE 1062), and only then is
        the existing row read: (row, created). One call where `ensure_code`
        makes two.
        """
        return self._add(promotion_id, code, payload)

    def ensure_code(
        self, promotion_id: str, code: str, payload: Mapping[str, Any] | None = None
    ) -> tuple[IndividualCode, bool]:
        """Look the code up first, create it only when missing: (row, created)."""
        pid = _check_id(promotion_id, "promotion id")
        existing = self.find_code(code)
        if existing is not None:
            return self._same_promotion(existing, pid, code), False
        return self._add(pid, code, payload)

    def delete_code(self, code: IndividualCode | str) -> bool:
        """Remove an individual code (a code row, or its 32-hex id) from its promotion.

        Rule 17: a refunded purchase's code leaves the VIP promotion. True when
        it was deleted now, False when it was already gone (404): DELETE is
        retried after a lost answer, and a retry that finds it gone means the
        same. Shopware answers 204; the integration needs
        `promotion_individual_code:delete`, else `AuthRejected`. Redeemed
        codes are not refused: whether to delete one is the caller's choice
        (rule 17 keeps them).
        """
        raw = code.id if isinstance(code, IndividualCode) else code
        cid = _check_id(raw, "individual code id")
        response = self._call("DELETE", f"{CODE_ENTITY_PATH}/{cid}", ok=(404,))
        return response.status_code != 404

    def clear_payload(self, code: IndividualCode) -> None:
        """Empty a code's payload: Shopware's checkout accepts only codes without one.

        The storefront accepts only individual codes whose payload is null
        (api-notes 4.6); syncctl up to this release wrote one at creation.
        PATCH is idempotent; a code gone meanwhile raises NotFound.
        """
        cid = _check_id(code.id, "individual code id")
        self._call(
            "PATCH", f"{CODE_ENTITY_PATH}/{cid}", json_body={"payload": None}, idempotent=True
        )

    # -- internals ----------------------------------------------------------

    def _read_promotion(self, pid: str) -> tuple[Promotion | None, str]:
        """(promotion, "") or (None, Shopware's 404 text)."""
        response = self._call("GET", f"/api/promotion/{pid}", ok=(404,))
        if response.status_code == 404:
            return None, _error_text(response)
        body = expect_dict(SERVICE, parse_json(SERVICE, response), "promotion answer")
        data = body.get("data")
        if not isinstance(data, dict):
            raise BadResponse(SERVICE, "promotion answer: 'data' missing or not an object")
        return _parse_promotion(_flatten(data)), ""

    def _add(
        self, promotion_id: str, code: str, payload: Mapping[str, Any] | None
    ) -> tuple[IndividualCode, bool]:
        pid = _check_id(promotion_id, "promotion id")
        _check_code(code)
        cid = code_id(code)
        body: dict[str, Any] = {"id": cid, "promotionId": pid, "code": code}
        if payload:
            body["payload"] = dict(payload)
        try:
            response = self._call(
                "POST",
                CODE_ENTITY_PATH,
                params={"_response": "basic"},
                json_body=body,
                idempotent=False,
                write=True,
                ok=(400, 409, 500),
            )
        except OutcomeUnknown:
            existing = self._find_quietly(code)
            if existing is None:
                raise  # still unknown: a later add_code with the same code is safe
            # Most likely our own write landed before the connection failed.
            return self._same_promotion(existing, pid, code), True
        status = response.status_code
        if response.is_success:
            if status == 204 or not response.content:
                return IndividualCode(cid, pid, code, _freeze(body.get("payload"))), True
            answer = expect_dict(SERVICE, parse_json(SERVICE, response), "create answer")
            data = answer.get("data")
            if not isinstance(data, dict):
                raise BadResponse(SERVICE, "create answer: 'data' missing or not an object")
            return _parse_code(_flatten(data)), True
        errors = _errors(response)
        if _is_duplicate(status, errors):
            existing = self.find_code(code)
            if existing is None:
                raise Conflict(
                    SERVICE,
                    f"creating code {code!r} collided ({_error_text(response)}) but no such code "
                    "is visible",
                    hint=f"id {cid} may be used by another code; inspect it in the Shopware admin",
                    status=status,
                )
            return self._same_promotion(existing, pid, code), False
        if _is_missing_promotion(errors):
            raise NotFound(
                SERVICE,
                f"promotion {pid} does not exist: creating code {code!r} failed on the "
                "promotion foreign key",
                hint=PROMOTION_HINT,
                status=status,
            )
        if status >= 500:
            # A failed write is rolled back; verify before calling it transient.
            existing = self._find_quietly(code)
            if existing is not None:  # committed before something in front of it failed
                return self._same_promotion(existing, pid, code), True
            raise Unavailable(
                SERVICE,
                f"creating code {code!r} answered {status}: {_error_text(response)}",
                hint="the code is not there; the next run retries",
                status=status,
            )
        raise InvalidRequest(
            SERVICE,
            f"creating code {code!r} was refused ({status}): {_error_text(response)}",
            status=status,
        )

    def _same_promotion(self, existing: IndividualCode, pid: str, code: str) -> IndividualCode:
        if existing.promotion_id != pid:
            raise Conflict(
                SERVICE,
                f"code {code!r} already belongs to promotion {existing.promotion_id}, not {pid}",
                hint="codes are unique across all promotions; change [shopware] code_prefix "
                "or remove the other code",
                status=409,
                payload={"id": existing.id, "promotionId": existing.promotion_id},
            )
        return existing

    def _find_quietly(self, code: str) -> IndividualCode | None:
        """A verification look-up whose own failure must not hide the original error."""
        try:
            return self.find_code(code)
        except ServiceError:
            return None

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json_body: Any = None,
        idempotent: bool | None = None,
        write: bool | None = None,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send with the bearer token; on 401 renew the token once and repeat.

        A 401 means the request was refused before it did anything, so
        repeating even a write is safe.
        """
        token = self._tokens.current()
        for renewed in (False, True):
            response = self._http.request(
                method,
                path,
                params=params,
                json_body=json_body,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                idempotent=idempotent,
                write=write,
                ok=(401, *ok),
            )
            if response.status_code != 401:
                return response
            if not renewed:
                token = self._tokens.renew(token)
        self._tokens.invalidate()
        raise AuthRejected(
            SERVICE,
            f"{method} {path} answered 401 even with a new token: {_error_text(response)}",
            hint="check that the integration is still active; " + CREDENTIALS_HINT,
            status=401,
        )

    def _parse_search(self, response: httpx.Response) -> tuple[int | None, list[IndividualCode]]:
        body = expect_dict(SERVICE, parse_json(SERVICE, response), "code search answer")
        data = body.get("data")
        if not isinstance(data, list):
            raise BadResponse(SERVICE, "code search answer: 'data' missing or not a list")
        total = body.get("total")
        if total is None and isinstance(body.get("meta"), dict):  # JSON:API
            total = body["meta"].get("total")
        codes = []
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise BadResponse(SERVICE, f"code search answer: data[{index}] is not an object")
            codes.append(_parse_code(_flatten(item)))
        return (total if isinstance(total, int) else None), codes


# -- parsing helpers ----------------------------------------------------------


def _flatten(item: dict[str, Any]) -> dict[str, Any]:
    """A JSON entity, or a JSON:API resource (`id` + `attributes`) made flat."""
    attributes = item.get("attributes")
    if isinstance(attributes, dict) and "type" in item:
        return {**attributes, "id": item.get("id")}
    return item


def _parse_code(item: dict[str, Any]) -> IndividualCode:
    cid = item.get("id")
    pid = item.get("promotionId")
    code = item.get("code")
    for name, value in (("id", cid), ("promotionId", pid), ("code", code)):
        if not isinstance(value, str) or not value:
            raise BadResponse(
                SERVICE, f"individual code: '{name}' missing or not a string ({value!r:.40})"
            )
    assert isinstance(cid, str) and isinstance(pid, str) and isinstance(code, str)
    payload = item.get("payload")
    if isinstance(payload, list) and not payload:
        payload = {}  # PHP encodes an empty object as []
    return IndividualCode(
        id=cid.lower(),
        promotion_id=pid.lower(),
        code=code,
        payload=_freeze(payload if isinstance(payload, dict) else None),
    )


def _parse_promotion(item: dict[str, Any]) -> Promotion:
    pid = item.get("id")
    if not isinstance(pid, str) or not pid:
        raise BadResponse(SERVICE, "promotion: 'id' missing or not a string")
    flags: dict[str, bool] = {}
    for flag in ("active", "useCodes", "useIndividualCodes"):
        value = item.get(flag)
        if not isinstance(value, bool):
            raise BadResponse(
                SERVICE, f"promotion: '{flag}' missing or not a boolean ({value!r:.20})"
            )
        flags[flag] = value
    name = item.get("name")
    if not isinstance(name, str):
        # Unset in the API language: Shopware falls back in `translated`.
        translated = item.get("translated")
        name = translated.get("name") if isinstance(translated, dict) else None
    pattern = item.get("individualCodePattern")
    limit = item.get("maxRedemptionsGlobal")
    count = item.get("orderCount")
    return Promotion(
        id=pid.lower(),
        name=name if isinstance(name, str) else None,
        active=flags["active"],
        use_codes=flags["useCodes"],
        use_individual_codes=flags["useIndividualCodes"],
        individual_code_pattern=pattern if isinstance(pattern, str) else None,
        valid_from=_parse_time(item.get("validFrom"), "validFrom"),
        valid_until=_parse_time(item.get("validUntil"), "validUntil"),
        max_redemptions_global=limit if _is_int(limit) else None,
        order_count=count if _is_int(count) else 0,
    )


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_time(value: Any, name: str) -> datetime | None:
    """A DateTimeField as Shopware serialises it (`2025-05-01T10:00:00.000+00:00`), in UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadResponse(SERVICE, f"promotion: '{name}' is not a date ({value!r:.40})")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadResponse(
            SERVICE, f"promotion: '{name}' is not an ISO 8601 date ({value!r:.40})"
        ) from None
    return _utc(parsed)


def _utc(moment: datetime) -> datetime:
    """Aware and in UTC; a naive time is taken as UTC (Shopware stores UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _freeze(payload: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return MappingProxyType(dict(payload)) if payload is not None else None


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _HEX32.match(value.strip()):
        raise InvalidRequest(SERVICE, f"{what} {value!r} is not 32 hex digits", hint=PROMOTION_HINT)
    return value.strip().lower()


def _check_code(code: str) -> None:
    if not isinstance(code, str) or not code.strip():
        raise InvalidRequest(SERVICE, "an individual code must be a non-empty string")


def _positive_number(value: Any, default: float) -> float:
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float) and value > 0:
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return default
        return number if number > 0 else default
    return default


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    """Shopware's `errors` list (JSON:API error objects); empty when absent."""
    try:
        body = response.json()
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    errors = body.get("errors")
    if not isinstance(errors, list):
        return []
    return [e for e in errors if isinstance(e, dict)]


def _error_text(response: httpx.Response) -> str:
    """One line from Shopware's `{"errors":[{status, code, title, detail, source}]}`."""
    errors = _errors(response)
    if not errors:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return " ".join(body["message"].split())[:300]
        return f"HTTP {response.status_code}"
    first = errors[0]
    text = first.get("detail") or first.get("title") or first.get("description") or ""
    parts = [" ".join(str(text).split())]
    code = first.get("code")
    if isinstance(code, str) and code and code != "0" and not code.isdigit():
        parts.append(f"[{code}]")
    source = first.get("source")
    if isinstance(source, dict) and isinstance(source.get("pointer"), str):
        parts.append(f"at {source['pointer']}")
    if len(errors) > 1:
        parts.append(f"(+{len(errors) - 1} more)")
    return " ".join(p for p in parts if p)[:300]


def _error_haystack(errors: list[dict[str, Any]]) -> str:
    return " ".join(
        str(e.get(k) or "") for e in errors for k in ("code", "title", "detail")
    ).lower()


def _is_duplicate(status: int, errors: list[dict[str, Any]]) -> bool:
    """Every shape of "this code or id exists already" Shopware (or a proxy) gives."""
    if any(e.get("code") == _WRITE_TYPE_INTEND for e in errors):
        return True
    haystack = _error_haystack(errors)
    if "expected command for" in haystack and "insertcommand" in haystack:
        return True
    if status == 409:
        return True
    return any(marker in haystack for marker in _DUPLICATE_MARKERS) and not _is_missing_promotion(
        errors
    )


def _is_missing_promotion(errors: list[dict[str, Any]]) -> bool:
    haystack = _error_haystack(errors)
    return any(marker in haystack for marker in _FK_MARKERS)


def _auth_throttled(response: httpx.Response) -> bool:
    """Is this Shopware's own login throttle (repeated failures), not a plain 429?"""
    return any(
        str(error.get("code", "")) == "FRAMEWORK__AUTH_THROTTLED" for error in _errors(response)
    )


def _throttle_seconds(response: httpx.Response) -> float | None:
    """The wait FRAMEWORK__AUTH_THROTTLED names in `meta.parameters.seconds`."""
    header = response.headers.get("retry-after")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    for error in _errors(response):
        meta = error.get("meta")
        params = meta.get("parameters") if isinstance(meta, dict) else None
        seconds = params.get("seconds") if isinstance(params, dict) else None
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            return float(seconds)
    return None
