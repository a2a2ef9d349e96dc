"""Shopware 6 Admin API emulator: OAuth, promotions and their individual codes.

It answers like Shopware 6.7 (api-notes.md section 4, the 6.7.10.1 Admin API
schema, and Shopware's source for the error shapes), including the parts
that make a client's life hard:

- OAuth client_credentials tokens live `token_ttl` seconds (600) on the
  emulator's clock (`now`, `advance()`); expired or unknown tokens get
  league/oauth2-server's 401 (`code` "9"). Wrong credentials get 401 with
  `code` "4", title "Client authentication failed" and `detail: null`; a
  body that is not JSON (or lacks grant_type) gets 400 "unsupported grant
  type". Repeated failed token requests are throttled like Shopware's
  `oauth` rate limiter: 429 FRAMEWORK__AUTH_THROTTLED naming the wait in
  `meta.parameters.seconds` and sending NO Retry-After header.
- Responses are JSON:API (`application/vnd.api+json`) unless the Accept
  header asks for `application/json`; `*/*` means JSON:API; an Accept naming
  neither (or none at all) is a 415, as Symfony's content negotiation does.
- Criteria: filters equals / equalsAny / contains / prefix / suffix / range /
  multi / not, sort, limit, page, ids, includes, total-count-mode none
  (default; `total` is then the size of the page) | exact | next-pages.
  `page` without `limit` is offset 0 (Shopware multiplies by the *given*
  limit); no limit means `max_limit` (500) rows; a larger limit is a 400.
- Creating an individual code: `id` optional (client-generated allowed),
  `promotionId` and `code` required (400 with Symfony violations at
  `/0/<field>`, no `title`, like WriteConstraintViolationException).
  A repeated id is a 400 FRAMEWORK__WRITE_TYPE_INTEND_ERROR (Shopware turns
  the insert into an update and refuses it). A code taken by ANY promotion,
  compared case-insensitively (utf8mb4_unicode_ci), is the raw MySQL error
  Shopware passes through: 500, `code` "1062", SQLSTATE[23000] ... Duplicate
  entry. An unknown promotionId is the same kind of 500 with error 1452
  (foreign key); no DAL handler maps either (chosen per api-notes 4.4).
  `?_response=basic|detail` answers 200 with the entity, otherwise 204 with
  a Location header. An empty `payload` object comes back as `[]` (PHP).
- Entities are serialised with nulls kept (`payload: null`, `updatedAt:
  null`), as Shopware's JsonEntityEncoder does; dates as RFC 3339 with
  milliseconds in UTC (`2025-05-01T10:00:00.000+00:00`).
- Promotions carry `validFrom`/`validUntil` (either may be null), `active`,
  the code flags and `maxRedemptionsGlobal`/`orderCount`; `update_promotion`
  deactivates one or moves its dates.
- `redeem_code` is an order using a code: the storefront's cart accepts an
  individual code only when PermittedIndividualCodePromotions would (active,
  inside its dates, both code flags on, and the code's payload null), then
  PromotionIndividualCodeRedeemer REPLACES the payload with `{orderId,
  customerId, customerName}` and the promotion's orderCount grows.
- `DELETE /api/promotion-individual-code/{id}` answers 204 with a Location
  header; an unknown id is 404 FRAMEWORK__RESOURCE_NOT_FOUND (ApiController
  throws ResourceNotFoundException when the delete reports errors).
- ACL: `privileges=None` is an all-powerful integration; a set such as
  {"promotion_individual_code:read"} makes other calls 403
  FRAMEWORK__MISSING_PRIVILEGE_ERROR.

The Admin API itself sends no rate-limit headers and has no request rate
limit besides the OAuth throttle; a proxy's 429 is what `inject()` is for.
Indexes (id, code key, promotion) and a sort cache keep a 100k-code shop
answering in milliseconds.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from syncctl.sandbox.server import Emulator, Exchange, Request, Response, route

CODE = "promotion_individual_code"
PROMOTION = "promotion"
#: URL segment -> entity name.
URL_ENTITIES = {"promotion-individual-code": CODE, "promotion": PROMOTION}
ENTITY_URLS = {v: k for k, v in URL_ENTITIES.items()}
JSON_API = "application/vnd.api+json"
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_OAUTH_DENIED = "The resource owner or authorization server denied the request."
_INVALID_GRANT = (
    "The provided authorization grant (e.g., authorization code, resource owner credentials) "
    "or refresh token is invalid, expired, revoked, does not match the redirection URI used in "
    "the authorization request, or was issued to another client."
)
_NOT_BLANK = "c1051bb4-d103-4f74-8988-acbcafc7fdc3"
_TOO_LONG = "d94b19cc-114f-4f44-9cc4-4138e80a87b9"
_WRONG_TYPE = "ba785a8c-82cb-4283-967c-3cf342181b40"
_SQL_PREFIX = "An exception occurred while executing a query: SQLSTATE[23000]: "
_COUNT_MODES = {"none": 0, "exact": 1, "next-pages": 2}

#: Fields the criteria may use, per entity, and how values compare.
_FIELDS: dict[str, dict[str, str]] = {
    CODE: {
        "id": "id",
        "promotionId": "id",
        "code": "text",
        "payload": "json",
        "createdAt": "plain",
        "updatedAt": "plain",
    },
    PROMOTION: {
        "id": "id",
        "name": "text",
        "active": "bool",
        "useCodes": "bool",
        "useIndividualCodes": "bool",
        "individualCodePattern": "text",
        "code": "text",
        "priority": "plain",
        "validFrom": "plain",
        "validUntil": "plain",
        "maxRedemptionsGlobal": "plain",
        "orderCount": "plain",
        "createdAt": "plain",
        "updatedAt": "plain",
    },
}


def collation_key(value: str) -> str:
    """utf8mb4_unicode_ci, approximately: case/accent-insensitive, PAD SPACE."""
    if value.isascii():
        return value.casefold().rstrip(" ")
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold().rstrip(" ")


class ApiError(Exception):
    """An error answer with Shopware's `{"errors": [...]}` body."""

    def __init__(
        self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status}: {errors[0].get('detail') if errors else ''}")
        self.status = status
        self.errors = errors
        self.headers = headers or {}


class RedemptionRefused(ValueError):
    """`redeem_code` was refused: the shop would not take the code in a cart (or order)."""


class _Keep:
    """`update_promotion`'s default: leave the field as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()
Moment = datetime | str | None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unknown status"


def http_error(status: int, detail: str) -> ApiError:
    """A Symfony HttpException as ErrorResponseFactory renders it (`code` "0")."""
    return ApiError(
        status, [{"code": "0", "status": str(status), "title": _phrase(status), "detail": detail}]
    )


def shopware_error(
    status: int,
    code: str,
    detail: str,
    parameters: dict[str, Any] | None = None,
    pointer: str | None = None,
) -> dict[str, Any]:
    """One error of a ShopwareHttpException (status, code, title, detail, meta)."""
    error: dict[str, Any] = {
        "status": str(status),
        "code": code,
        "title": _phrase(status),
        "detail": detail,
        "meta": {"parameters": parameters if parameters else []},
    }
    if pointer is not None:
        error["source"] = {"pointer": pointer}
    return error


def _violation(code: str, message: str, parameters: dict[str, Any], pointer: str) -> dict[str, Any]:
    """A WriteConstraintViolationException entry: no `title`, a `template`."""
    return {
        "code": code,
        "status": "400",
        "detail": message,
        "template": message,
        "meta": {"parameters": parameters},
        "source": {"pointer": pointer},
    }


def _oauth_error(status: int, code: int, message: str, hint: str | None) -> ApiError:
    """An OAuthServerException: title = message, detail = hint (may be null)."""
    return ApiError(
        status, [{"code": str(code), "status": str(status), "title": message, "detail": hint}]
    )


def _sql_error(number: int, message: str) -> ApiError:
    """A raw Doctrine DBAL exception: 500, the MySQL error number as `code`."""
    return ApiError(
        500,
        [
            {
                "code": str(number),
                "status": "500",
                "title": "Internal Server Error",
                "detail": _SQL_PREFIX + message,
            }
        ],
    )


def _php_json(value: Any) -> Any:
    """What a JSON value looks like after PHP decoded it to arrays and back."""
    if isinstance(value, dict):
        if not value:
            return []
        return {k: _php_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_php_json(v) for v in value]
    return value


def _api(fn: Callable[..., Response]) -> Callable[..., Response]:
    """Turn an `ApiError` raised by a handler into its error answer."""

    @functools.wraps(fn)
    def wrapper(self: ShopwareEmulator, request: Request, **params: str) -> Response:
        try:
            return fn(self, request, **params)
        except ApiError as exc:
            return Response(exc.status, {"errors": exc.errors}, dict(exc.headers))

    return wrapper


@dataclass
class _Criteria:
    filters: list[tuple[Any, ...]]
    sort: list[tuple[str, bool]]  # (field, descending)
    limit: int | None
    offset: int
    count_mode: int
    ids: list[str] | None
    includes: dict[str, list[str]] | None


class _RedactingLog(list[Exchange]):
    """The traffic log, with the client secret of token requests blanked out."""

    def append(self, entry: Exchange) -> None:
        if isinstance(entry.body, dict) and "client_secret" in entry.body:
            entry.body = {**entry.body, "client_secret": "<redacted>"}
        elif isinstance(entry.body, str) and "client_secret" in entry.body:
            entry.body = re.sub(r"client_secret=[^&]*", "client_secret=<redacted>", entry.body)
        super().append(entry)


class ShopwareEmulator(Emulator):
    """A stateful Shopware 6 Admin API (promotions, individual codes, OAuth)."""

    name = "shopware"
    prefix = "/api"
    read_posts = (r"^/api/oauth/token$", r"^/api/search/", r"^/api/search-ids/")

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        latency: float = 0.0,
        token_ttl: int = 600,
        max_limit: int = 500,
        privileges: Iterable[str] | None = None,
        auth_failure_limit: int = 10,
        auth_failure_window: float = 10.0,
        version: str = "6.7.10.1",
    ) -> None:
        super().__init__(latency=latency)
        self.log = _RedactingLog()
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.max_limit = max_limit
        #: None: the integration may do everything; else "<entity>:<read|create|update|delete>".
        self.privileges: set[str] | None = set(privileges) if privileges is not None else None
        self.auth_failure_limit = auth_failure_limit
        self.auth_failure_window = auth_failure_window
        self.version = version
        #: The emulator's clock: None follows time.time(); set a number to freeze it.
        self.now: float | None = None
        self._tokens: dict[str, float] = {}  # access token -> expiry (epoch s)
        self._auth_failures: list[float] = []
        self.token_requests = 0
        self._promotions: dict[str, dict[str, Any]] = {}
        self._codes: dict[str, dict[str, Any]] = {}  # id -> row (insertion order)
        self._code_keys: dict[str, str] = {}  # collation key -> id
        self._by_promotion: dict[str, dict[str, None]] = {}  # promotion id -> ordered ids
        self._version = 0  # bumped on every write; invalidates the sort cache
        self._sort_cache: dict[tuple[Any, ...], tuple[int, list[str]]] = {}

    def __repr__(self) -> str:  # keep the secret out of test output
        return f"ShopwareEmulator(codes={len(self._codes)}, promotions={len(self._promotions)})"

    # -- clock and tokens ---------------------------------------------------

    def time(self) -> float:
        return self.now if self.now is not None else time.time()

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (freezing it at the new time)."""
        with self.lock:
            self.now = self.time() + seconds

    def expire_tokens(self) -> None:
        """Forget every issued token: the next call with one answers 401."""
        with self.lock:
            self._tokens.clear()

    def issue_token(self) -> str:
        """A valid token without an HTTP round trip (for tests of other parts)."""
        with self.lock:
            return self._new_token()

    def _new_token(self) -> str:
        now = self.time()

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        header = b64(b'{"typ":"JWT","alg":"RS256"}')
        claims = b64(
            json.dumps(
                {"jti": secrets.token_hex(20), "iat": now, "exp": now + self.token_ttl}
            ).encode()
        )
        token = f"{header}.{claims}.{b64(secrets.token_bytes(32))}"
        self._tokens[token] = now + self.token_ttl
        return token

    # -- seeding and inspection ------------------------------------------------

    def add_promotion(
        self,
        promotion_id: str | None = None,
        *,
        name: str = "VIP",
        active: bool = True,
        use_codes: bool = True,
        use_individual_codes: bool = True,
        pattern: str | None = "VIP-%s%s%d%d",
        valid_from: Moment = None,
        valid_until: Moment = None,
        max_redemptions_global: int | None = None,
    ) -> str:
        """Create a promotion directly (replacing one with that id); returns its id.

        `valid_from`/`valid_until` take an aware datetime or Shopware's
        string form; None leaves that side of the window open.
        """
        pid = (promotion_id or uuid.uuid4().hex).lower()
        with self.lock:
            self._promotions[pid] = {
                "id": pid,
                "name": name,
                "active": active,
                "validFrom": _moment(valid_from),
                "validUntil": _moment(valid_until),
                "maxRedemptionsGlobal": max_redemptions_global,
                "maxRedemptionsPerCustomer": None,
                "priority": 1,
                "exclusive": False,
                "code": None,
                "useCodes": use_codes,
                "useIndividualCodes": use_individual_codes,
                "individualCodePattern": pattern,
                "useSetGroups": False,
                "customerRestriction": False,
                "preventCombination": False,
                "orderCount": 0,
                "ordersPerCustomerCount": None,
                "exclusionIds": [],
                "customFields": None,
                "createdAt": self._stamp(),
                "updatedAt": None,
            }
            self._by_promotion.setdefault(pid, {})
            self._version += 1
        return pid

    def update_promotion(
        self,
        promotion_id: str,
        *,
        active: bool | _Keep = KEEP,
        use_codes: bool | _Keep = KEEP,
        use_individual_codes: bool | _Keep = KEEP,
        valid_from: Moment | _Keep = KEEP,
        valid_until: Moment | _Keep = KEEP,
        max_redemptions_global: int | _Keep | None = KEEP,
        name: str | _Keep = KEEP,
    ) -> dict[str, Any]:
        """Change a promotion as an admin would (deactivate it, move its dates); returns it.

        Only the fields given change; None empties a date or the limit, as
        clearing the field in the admin does.
        """
        changes = {
            "active": active,
            "useCodes": use_codes,
            "useIndividualCodes": use_individual_codes,
            "validFrom": valid_from,
            "validUntil": valid_until,
            "maxRedemptionsGlobal": max_redemptions_global,
            "name": name,
        }
        with self.lock:
            row = self._promotions[promotion_id.lower()]
            for key, value in changes.items():
                if isinstance(value, _Keep):
                    continue
                if key in ("validFrom", "validUntil"):
                    assert not isinstance(value, bool | int)
                    value = _moment(value)
                row[key] = value
            row["updatedAt"] = self._stamp()
            self._version += 1
            return dict(row)

    def redeem_code(
        self,
        code: str,
        *,
        order_id: str | None = None,
        customer_id: str | None = None,
        customer_name: str = "Sandbox Buyer",
        via_cart: bool = True,
    ) -> dict[str, Any]:
        """An order uses `code`, as Shopware records it; returns the code row after.

        `via_cart=True` is a storefront checkout: the cart takes an individual
        code only when PermittedIndividualCodePromotions matches it (promotion
        active, inside its dates, useCodes and useIndividualCodes, the code's
        payload null) and the promotion is under its global maximum, else
        `RedemptionRefused` names why (Shopware shows "promotion not found").
        `via_cart=False` is an order written through the Admin API or an
        import: only PromotionIndividualCodeRedeemer runs, which refuses a
        code another order redeemed and otherwise overwrites any payload.
        Either way the payload becomes `{orderId, customerId, customerName}`
        and the promotion's orderCount grows by one.
        """
        with self.lock:
            cid = self._code_keys.get(collation_key(code))
            if cid is None:
                raise RedemptionRefused(f"no individual code {code!r}: promotion not found")
            row = self._codes[cid]
            promotion = self._promotions[row["promotionId"]]
            order = (order_id or uuid.uuid4().hex).lower()
            if via_cart:
                why = self._cart_refusal(promotion, row)
                if why is not None:
                    raise RedemptionRefused(f"code {row['code']!r}: {why}")
            payload = row.get("payload")
            if isinstance(payload, dict) and payload.get("orderId") not in (None, order):
                raise RedemptionRefused(
                    f"code {row['code']!r} was already redeemed by order {payload['orderId']} "
                    "(PROMOTION__CODE_ALREADY_REDEEMED)"
                )
            row["payload"] = {
                "orderId": order,
                "customerId": (customer_id or "").lower(),
                "customerName": customer_name,
            }
            row["updatedAt"] = self._stamp()
            promotion["orderCount"] = int(promotion.get("orderCount") or 0) + 1
            self._version += 1
            return dict(row)

    def _cart_refusal(self, promotion: dict[str, Any], row: dict[str, Any]) -> str | None:
        """Why Shopware's cart would not find a promotion for this code (lock held)."""
        now = datetime.fromtimestamp(self.time(), UTC)
        start, end = _parse_moment(promotion["validFrom"]), _parse_moment(promotion["validUntil"])
        limit = promotion.get("maxRedemptionsGlobal")
        if not promotion["active"]:
            return "the promotion is not active"
        if start is not None and start > now:
            return "the promotion has not started (validFrom)"
        if end is not None and end <= now:
            return "the promotion has ended (validUntil)"
        if not (promotion["useCodes"] and promotion["useIndividualCodes"]):
            return "the promotion does not use individual codes"
        if row.get("payload") is not None:
            return (
                "its payload is not null, which the cart reads as redeemed "
                f"({json.dumps(row['payload'])[:80]})"
            )
        if limit and int(promotion.get("orderCount") or 0) >= int(limit):
            return "the promotion reached its maximum uses (maxRedemptionsGlobal)"
        return None

    def add_code(
        self,
        promotion_id: str,
        code: str,
        *,
        code_id: str | None = None,
        payload: Any = None,
    ) -> str:
        """Store a code directly (seeding); returns its id.

        The API's constraints apply: a taken code or an unknown promotion
        raises `ApiError` with the answer the API would give.
        """
        with self.lock:
            row = self._insert_code(code_id, promotion_id.lower(), code, payload)
        return str(row["id"])

    def add_codes(self, promotion_id: str, codes: Iterable[str]) -> int:
        """Bulk seeding (100k codes in well under a second); returns how many."""
        pid = promotion_id.lower()
        count = 0
        with self.lock:
            if pid not in self._promotions:
                raise ValueError(f"unknown promotion {promotion_id}")
            stamp = self._stamp()
            bucket = self._by_promotion.setdefault(pid, {})
            for code in codes:
                key = collation_key(code)
                if key in self._code_keys:
                    raise ValueError(f"duplicate code {code!r}")
                cid = uuid.uuid4().hex
                self._codes[cid] = {
                    "id": cid,
                    "promotionId": pid,
                    "code": code,
                    "payload": None,
                    "createdAt": stamp,
                    "updatedAt": None,
                }
                self._code_keys[key] = cid
                bucket[cid] = None
                count += 1
            self._version += 1
        return count

    def codes(self, promotion_id: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored code rows (all, or one promotion's), in insertion order."""
        with self.lock:
            if promotion_id is None:
                ids: Iterable[str] = list(self._codes)
            else:
                ids = list(self._by_promotion.get(promotion_id.lower(), {}))
            return [dict(self._codes[i]) for i in ids]

    def find(self, code: str) -> dict[str, Any] | None:
        """The stored row whose code equals `code` the way MySQL compares it."""
        with self.lock:
            cid = self._code_keys.get(collation_key(code))
            return dict(self._codes[cid]) if cid else None

    def promotion(self, promotion_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self._promotions.get(promotion_id.lower())
            return dict(row) if row else None

    # -- Emulator hooks -----------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        if request.path == "/api/oauth/token" or not request.path.startswith("/api/"):
            return None
        header = request.headers.get("authorization")
        if not header:
            error = _oauth_error(401, 9, _OAUTH_DENIED, 'Missing "Authorization" header')
        else:
            jwt = re.sub(r"^\s*Bearer\s", "", header).strip()
            expiry = self._tokens.get(jwt)
            if jwt.count(".") != 2:
                error = _oauth_error(401, 9, _OAUTH_DENIED, "The JWT string must have two dots")
            elif expiry is None or expiry <= self.time():
                error = _oauth_error(401, 9, _OAUTH_DENIED, "Access token could not be verified")
            else:
                return None
        return Response(error.status, {"errors": error.errors})

    def not_found(self, request: Request) -> Response:
        host = request.headers.get("host", "localhost")
        error = http_error(
            404, f'No route found for "{request.method} http://{host}{request.path}"'
        )
        return Response(404, {"errors": error.errors})

    def error_response(self, status: int, message: str) -> Response:
        return Response(status, {"errors": http_error(status, message).errors})

    # -- routes -------------------------------------------------------------------

    @route("POST", "/oauth/token")
    @_api
    def token(self, request: Request) -> Response:
        """AuthController::token: throttle check, then the client_credentials grant."""
        self.token_requests += 1
        now = self.time()
        window_start = now - self.auth_failure_window
        self._auth_failures = [t for t in self._auth_failures if t > window_start]
        if len(self._auth_failures) >= self.auth_failure_limit:
            wait = max(1, int(self._auth_failures[0] + self.auth_failure_window - now + 0.999))
            raise ApiError(
                429,
                [
                    shopware_error(
                        429,
                        "FRAMEWORK__AUTH_THROTTLED",
                        f"Auth throttled for {wait} seconds.",
                        {"seconds": wait},
                    )
                ],
            )
        body = self._form_or_json(request)
        grant = body.get("grant_type") if isinstance(body, dict) else None
        try:
            if grant in ("password", "refresh_token"):
                # Supported by Shopware for admin users; the emulator has none.
                raise _oauth_error(400, 10, _INVALID_GRANT, "The emulator has no admin users")
            if grant != "client_credentials":
                raise _oauth_error(
                    400,
                    2,
                    "The authorization grant type is not supported by the authorization server.",
                    "Check that all required parameters have been provided",
                )
            assert isinstance(body, dict)
            client_id = body.get("client_id")
            if not isinstance(client_id, str) or not client_id:
                raise _oauth_error(
                    400,
                    3,
                    "The request is missing a required parameter, includes an invalid parameter "
                    "value, includes a parameter more than once, or is otherwise malformed.",
                    "Check the `client_id` parameter",
                )
            secret = body.get("client_secret")
            if client_id != self.client_id or secret != self.client_secret:
                raise _oauth_error(401, 4, "Client authentication failed", None)
        except ApiError:
            self._auth_failures.append(now)
            raise
        self._auth_failures.clear()
        return Response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.token_ttl,
                "access_token": self._new_token(),
            },
            {"Cache-Control": "no-store, private", "Pragma": "no-cache"},
        )

    @route("GET", "/_info/version")
    @_api
    def info_version(self, request: Request) -> Response:
        return Response(200, {"version": self.version})

    @route("POST", "/search/{entity}")
    @_api
    def search(self, request: Request, entity: str) -> Response:
        name = self._entity(entity)
        fmt = self._negotiate(request)
        self._require(f"{name}:read")
        criteria = self._criteria(name, self._payload(request))
        rows, total = self._select(name, criteria)
        return self._listing(request, name, rows, total, criteria, fmt)

    @route("POST", "/search-ids/{entity}")
    @_api
    def search_ids(self, request: Request, entity: str) -> Response:
        name = self._entity(entity)
        self._require(f"{name}:read")
        criteria = self._criteria(name, self._payload(request))
        rows, total = self._select(name, criteria)
        return Response(200, {"total": total, "data": [r["id"] for r in rows]})

    @route("GET", "/promotion-individual-code/{entity_id}")
    @_api
    def get_code(self, request: Request, entity_id: str) -> Response:
        return self._detail(request, CODE, entity_id)

    @route("GET", "/promotion/{entity_id}")
    @_api
    def get_promotion(self, request: Request, entity_id: str) -> Response:
        return self._detail(request, PROMOTION, entity_id)

    @route("POST", "/promotion-individual-code")
    @_api
    def create_code(self, request: Request) -> Response:
        """ApiController::create for promotion_individual_code."""
        fmt = self._negotiate(request)
        response_type = request.arg("_response")
        if response_type is not None and response_type not in ("basic", "detail"):
            raise http_error(
                400,
                f'The response type "{response_type}" is not supported. '
                "Available types are: basic, detail",
            )
        self._require(f"{CODE}:create")
        body = self._payload(request)
        row = self._insert_code(
            body.get("id"),
            body.get("promotionId", _MISSING),
            body.get("code", _MISSING),
            body.get("payload"),
            pointer="/0",
        )
        location = f"{self._base(request)}/api/promotion-individual-code/{row['id']}"
        if response_type is None:
            return Response(204, None, {"Location": location})
        return self._detail_response(request, CODE, row, fmt, {"Location": location})

    @route("DELETE", "/promotion-individual-code/{entity_id}")
    @_api
    def delete_code(self, request: Request, entity_id: str) -> Response:
        """ApiController::delete: 204 + Location, or 404 when nothing was deleted."""
        self._negotiate(request)
        if not _HEX32.match(entity_id):
            raise shopware_api_error(
                400,
                "FRAMEWORK__INVALID_UUID",
                f"Value is not a valid UUID: {entity_id}",
                {"input": entity_id},
            )
        self._require(f"{CODE}:delete")
        cid = entity_id.lower()
        row = self._codes.get(cid)
        if row is None:
            raise self._not_found_error(CODE, entity_id)
        del self._codes[cid]
        self._code_keys.pop(collation_key(row["code"]), None)
        self._by_promotion.get(row["promotionId"], {}).pop(cid, None)
        self._version += 1
        location = f"{self._base(request)}/api/promotion-individual-code/{cid}"
        return Response(204, None, {"Location": location})

    @route("PATCH", "/promotion-individual-code/{entity_id}")
    @_api
    def update_code(self, request: Request, entity_id: str) -> Response:
        """ApiController::update: 204 + Location; only `payload` is changed here
        (the field syncctl repairs), other fields are validated like a create."""
        self._negotiate(request)
        if not _HEX32.match(entity_id):
            raise shopware_api_error(
                400,
                "FRAMEWORK__INVALID_UUID",
                f"Value is not a valid UUID: {entity_id}",
                {"input": entity_id},
            )
        self._require(f"{CODE}:update")
        cid = entity_id.lower()
        row = self._codes.get(cid)
        if row is None:
            raise self._not_found_error(CODE, entity_id)
        body = self._payload(request)
        if not isinstance(body, dict):
            raise http_error(400, "The request body must be a JSON object")
        if "payload" in body:
            value = body["payload"]
            if value is not None and not isinstance(value, dict | list):
                raise shopware_api_error(
                    400,
                    "FRAMEWORK__WRITE_CONSTRAINT_VIOLATION",
                    "This value should be of type array.",
                    {},
                )
            row["payload"] = _php_json(value)
            self._version += 1
        location = f"{self._base(request)}/api/promotion-individual-code/{cid}"
        return Response(204, None, {"Location": location})

    @route("POST", "/_action/sync")
    @_api
    def sync(self, request: Request) -> Response:
        """The Sync API for promotion_individual_code: upsert and delete, all or nothing."""
        body = self._payload(request, allow_list=True)
        operations = list(body.items()) if isinstance(body, dict) else list(enumerate(body))
        staged_codes = {cid: dict(row) for cid, row in self._codes.items()}
        written: list[str] = []
        deleted: list[str] = []
        not_found: list[str] = []
        problems: list[dict[str, Any]] = []
        for key, operation in operations:
            if not isinstance(operation, dict):
                raise http_error(400, f"Sync operation {key} must be an object.")
            entity = operation.get("entity")
            action = operation.get("action")
            payload = operation.get("payload")
            if entity != CODE:
                raise shopware_api_error(
                    400,
                    "FRAMEWORK__SYNC_ENTITY_NOT_EMULATED",
                    f'Entity "{entity}" is not emulated by the sandbox.',
                )
            if action not in ("upsert", "delete") or not isinstance(payload, list):
                raise shopware_api_error(
                    400, "FRAMEWORK__INVALID_SYNC_OPERATION", f"Invalid sync operation {key}."
                )
            self._require(f"{CODE}:{'delete' if action == 'delete' else 'create'}")
            for index, record in enumerate(payload):
                pointer = f"/{key}/{index}"
                if not isinstance(record, dict):
                    problems.append(
                        _violation(
                            _WRONG_TYPE,
                            "This value should be of type array.",
                            {"{{ type }}": "array"},
                            pointer,
                        )
                    )
                    continue
                if action == "delete":
                    del_id = str(record.get("id", "")).lower()
                    if staged_codes.pop(del_id, None) is not None:
                        deleted.append(del_id)
                    else:
                        not_found.append(del_id)
                    continue
                rid = record.get("id")
                if rid is not None and (not isinstance(rid, str) or not _HEX32.match(rid)):
                    raise shopware_api_error(
                        400,
                        "FRAMEWORK__INVALID_UUID",
                        f"Value is not a valid UUID: {rid}",
                        {"input": str(rid)},
                    )
                rid = (rid or uuid.uuid4().hex).lower()
                current = staged_codes.get(rid)
                merged = (
                    dict(current)
                    if current
                    else {
                        "id": rid,
                        "promotionId": None,
                        "code": None,
                        "payload": None,
                        "createdAt": self._stamp(),
                        "updatedAt": None,
                    }
                )
                for field_name in ("promotionId", "code", "payload"):
                    if field_name in record:
                        merged[field_name] = record[field_name]
                found = self._validate_code_fields(
                    merged.get("promotionId") if current or "promotionId" in record else _MISSING,
                    merged.get("code") if current or "code" in record else _MISSING,
                    merged.get("payload"),
                    pointer,
                )
                if found:
                    problems.extend(found)
                    continue
                merged["promotionId"] = str(merged["promotionId"]).lower()
                merged["payload"] = _php_json(merged.get("payload"))
                if current:
                    merged["updatedAt"] = self._stamp()
                staged_codes[rid] = merged
                written.append(rid)
        if problems:
            raise ApiError(400, problems)
        seen: dict[str, str] = {}
        for cid, row in staged_codes.items():
            if row["promotionId"] not in self._promotions:
                raise self._fk_error()
            key = collation_key(row["code"])
            if key in seen:
                raise self._duplicate_error(row["code"])
            seen[key] = cid
        self._replace_codes(staged_codes)
        return Response(
            200,
            {
                "data": {CODE: written} if written else [],
                "deleted": {CODE: deleted} if deleted else [],
                "notFound": {CODE: not_found} if not_found else [],
            },
        )

    # -- request helpers ------------------------------------------------------------

    def _entity(self, url_name: str) -> str:
        name = URL_ENTITIES.get(url_name)
        if name is None:
            raise shopware_api_error(
                404,
                "FRAMEWORK__DEFINITION_NOT_FOUND",
                f'Definition for entity "{url_name.replace("-", "_")}" does not exist.',
                {"entity": url_name.replace("-", "_")},
            )
        return name

    def _negotiate(self, request: Request) -> str:
        """ResponseFactoryRegistry::getType: "json", "jsonapi", or 415."""
        accepted: list[tuple[float, int, str]] = []
        for index, part in enumerate(request.headers.get("accept", "").split(",")):
            pieces = [p.strip() for p in part.split(";")]
            if not pieces[0]:
                continue
            quality = 1.0
            for parameter in pieces[1:]:
                if parameter.startswith("q="):
                    try:
                        quality = float(parameter[2:])
                    except ValueError:
                        quality = 0.0
            accepted.append((-quality, index, pieces[0].lower()))
        types = [t for _q, _i, t in sorted(accepted)]
        if "*/*" in types:
            types.append(JSON_API)
        for media_type in types:
            if media_type == "application/json":
                return "json"
            if media_type == JSON_API:
                return "jsonapi"
        raise http_error(415, f"All provided media types are unsupported. ({', '.join(types)})")

    def _require(self, privilege: str) -> None:
        if self.privileges is None or privilege in self.privileges:
            return
        detail = json.dumps({"message": "Missing privilege", "missingPrivileges": [privilege]})
        raise ApiError(
            403,
            [
                shopware_error(
                    403,
                    "FRAMEWORK__MISSING_PRIVILEGE_ERROR",
                    detail,
                    {"missingPrivileges": [privilege]},
                )
            ],
        )

    def _form_or_json(self, request: Request) -> Any:
        """The body as PHP sees it: JSON or a form decoded, anything else ignored."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            return dict(parse_qsl(request.body.decode("utf-8", "replace")))
        if content_type not in ("application/json", "application/x-json") or not request.body:
            return {}
        try:
            return json.loads(request.body)
        except ValueError:
            raise http_error(400, "The JSON payload is malformed.") from None

    def _payload(self, request: Request, *, allow_list: bool = False) -> Any:
        body = self._form_or_json(request)
        if isinstance(body, dict) or (allow_list and isinstance(body, list)):
            return body
        if isinstance(body, list) and not body:
            return {}
        raise http_error(400, "The JSON payload must be an object.")

    def _base(self, request: Request) -> str:
        return f"http://{request.headers.get('host', 'localhost')}"

    def _stamp(self) -> str:
        return datetime.fromtimestamp(self.time(), UTC).isoformat(timespec="milliseconds")

    # -- writes ---------------------------------------------------------------------

    def _validate_code_fields(
        self, promotion_id: Any, code: Any, payload: Any, pointer: str
    ) -> list[dict[str, Any]]:
        problems: list[dict[str, Any]] = []
        if promotion_id is _MISSING or promotion_id is None or promotion_id == "":
            problems.append(
                _violation(
                    _NOT_BLANK,
                    "This value should not be blank.",
                    {"{{ value }}": "null"},
                    f"{pointer}/promotionId",
                )
            )
        elif not isinstance(promotion_id, str) or not _HEX32.match(promotion_id):
            problems.append(
                shopware_error(
                    400,
                    "FRAMEWORK__INVALID_UUID",
                    f"Value is not a valid UUID: {promotion_id}",
                    {"input": str(promotion_id)},
                    f"{pointer}/promotionId",
                )
            )
        if code is _MISSING or code is None or code == "":
            problems.append(
                _violation(
                    _NOT_BLANK,
                    "This value should not be blank.",
                    {"{{ value }}": "null" if code in (None, _MISSING) else '""'},
                    f"{pointer}/code",
                )
            )
        elif not isinstance(code, str):
            problems.append(
                _violation(
                    _WRONG_TYPE,
                    "This value should be of type string.",
                    {"{{ value }}": json.dumps(code), "{{ type }}": "string"},
                    f"{pointer}/code",
                )
            )
        elif len(code) > 255:
            problems.append(
                _violation(
                    _TOO_LONG,
                    "This value is too long. It should have 255 characters or less.",
                    {"{{ value }}": json.dumps(code), "{{ limit }}": 255},
                    f"{pointer}/code",
                )
            )
        if payload is not None and not isinstance(payload, dict | list):
            problems.append(
                _violation(
                    _WRONG_TYPE,
                    "This value should be of type array.",
                    {"{{ value }}": json.dumps(payload), "{{ type }}": "array"},
                    f"{pointer}/payload",
                )
            )
        return problems

    def _insert_code(
        self, code_id: Any, promotion_id: Any, code: Any, payload: Any, *, pointer: str = "/0"
    ) -> dict[str, Any]:
        """Insert one code with Shopware's checks in Shopware's order (lock held)."""
        if code_id is not None:
            if not isinstance(code_id, str) or not _HEX32.match(code_id):
                raise shopware_api_error(
                    400,
                    "FRAMEWORK__INVALID_UUID",
                    f"Value is not a valid UUID: {code_id}",
                    {"input": str(code_id)},
                )
            code_id = code_id.lower()
            if code_id in self._codes:
                insert = "Shopware\\Core\\Framework\\DataAbstractionLayer\\Write\\Command\\"
                raise shopware_api_error(
                    400,
                    "FRAMEWORK__WRITE_TYPE_INTEND_ERROR",
                    f'Expected command for "{CODE}" to be "{insert}InsertCommand". '
                    f"(Got: {insert}UpdateCommand)",
                    {
                        "definition": CODE,
                        "expectedClass": insert + "InsertCommand",
                        "actualClass": insert + "UpdateCommand",
                    },
                )
        problems = self._validate_code_fields(promotion_id, code, payload, pointer)
        if problems:
            raise ApiError(400, problems)
        pid = str(promotion_id).lower()
        if pid not in self._promotions:
            raise self._fk_error()
        key = collation_key(str(code))
        if key in self._code_keys:
            raise self._duplicate_error(str(code))
        cid = code_id or uuid.uuid4().hex
        row = {
            "id": cid,
            "promotionId": pid,
            "code": code,
            "payload": _php_json(payload),
            "createdAt": self._stamp(),
            "updatedAt": None,
        }
        self._codes[cid] = row
        self._code_keys[key] = cid
        self._by_promotion.setdefault(pid, {})[cid] = None
        self._version += 1
        return row

    def _replace_codes(self, rows: dict[str, dict[str, Any]]) -> None:
        self._codes = rows
        self._code_keys = {collation_key(r["code"]): cid for cid, r in rows.items()}
        self._by_promotion = {pid: {} for pid in self._promotions}
        for cid, row in rows.items():
            self._by_promotion.setdefault(row["promotionId"], {})[cid] = None
        self._version += 1

    def _duplicate_error(self, code: str) -> ApiError:
        quoted = code.replace("'", "\\'")
        return _sql_error(
            1062,
            f"Integrity constraint violation: 1062 Duplicate entry '{quoted}' for key "
            f"'{CODE}.code'",
        )

    def _fk_error(self) -> ApiError:
        return _sql_error(
            1452,
            "Integrity constraint violation: 1452 Cannot add or update a child row: a foreign "
            f"key constraint fails (`shopware`.`{CODE}`, CONSTRAINT "
            f"`fk.{CODE}.promotion_id` FOREIGN KEY (`promotion_id`) REFERENCES `promotion` "
            "(`id`) ON DELETE CASCADE ON UPDATE CASCADE)",
        )

    # -- reads ----------------------------------------------------------------------

    def _table(self, name: str) -> dict[str, dict[str, Any]]:
        return self._codes if name == CODE else self._promotions

    def _detail(self, request: Request, name: str, entity_id: str) -> Response:
        fmt = self._negotiate(request)
        if not _HEX32.match(entity_id):
            raise shopware_api_error(
                400,
                "FRAMEWORK__INVALID_UUID",
                f"Value is not a valid UUID: {entity_id}",
                {"input": entity_id},
            )
        self._require(f"{name}:read")
        row = self._table(name).get(entity_id.lower())
        if row is None:
            raise self._not_found_error(name, entity_id)
        return self._detail_response(request, name, row, fmt, {})

    def _not_found_error(self, name: str, entity_id: str) -> ApiError:
        """ResourceNotFoundException, as a read or a delete of an unknown id raises it."""
        return shopware_api_error(
            404,
            "FRAMEWORK__RESOURCE_NOT_FOUND",
            f"The {name} resource with the following primary key was not found: id({entity_id})",
            {
                "type": name,
                "primaryKey": {"id": entity_id},
                "primaryKeyString": f"id({entity_id})",
            },
        )

    def _detail_response(
        self, request: Request, name: str, row: dict[str, Any], fmt: str, headers: dict[str, str]
    ) -> Response:
        if fmt == "json":
            return Response(200, {"data": self._encode(name, row, None)}, headers)
        uri = f"{self._base(request)}{request.path}"
        body = {
            "data": self._resource(request, name, row),
            "included": [],
            "links": {"self": uri},
        }
        return Response(200, body, headers, content_type=JSON_API)

    def _listing(
        self,
        request: Request,
        name: str,
        rows: list[dict[str, Any]],
        total: int,
        criteria: _Criteria,
        fmt: str,
    ) -> Response:
        if fmt == "json":
            data = [self._encode(name, row, criteria.includes) for row in rows]
            return Response(200, {"total": total, "data": data, "aggregations": []})
        self_link = f"{self._base(request)}{request.path}"
        body = {
            "data": [self._resource(request, name, row) for row in rows],
            "included": [],
            "links": {"self": self_link},
            "meta": {"totalCountMode": criteria.count_mode, "total": total},
            "aggregations": [],
        }
        return Response(200, body, content_type=JSON_API)

    def _encode(
        self, name: str, row: dict[str, Any], includes: dict[str, list[str]] | None
    ) -> dict[str, Any]:
        """JsonEntityEncoder: every field, nulls kept, plus Shopware's bookkeeping keys."""
        entity: dict[str, Any] = dict(row)
        if name == CODE:
            entity["promotion"] = None
        else:
            entity["translated"] = {"name": row.get("name"), "customFields": []}
            for association in ("setgroups", "salesChannels", "discounts", "individualCodes"):
                entity[association] = None
        entity.setdefault("translated", [])
        entity["_uniqueIdentifier"] = row["id"]
        entity["versionId"] = None
        entity["apiAlias"] = name
        wanted = (includes or {}).get(name)
        if wanted:
            entity = {k: v for k, v in entity.items() if k in wanted or k == "apiAlias"}
        return entity

    def _resource(self, request: Request, name: str, row: dict[str, Any]) -> dict[str, Any]:
        base = f"{self._base(request)}/api/{ENTITY_URLS[name]}/{row['id']}"
        attributes = {k: v for k, v in row.items() if k != "id"}
        relationships: dict[str, Any] = {}
        if name == CODE:
            relationships["promotion"] = {"data": None, "links": {"related": base + "/promotion"}}
        return {
            "id": row["id"],
            "type": name,
            "attributes": attributes,
            "links": {"self": base},
            "relationships": relationships,
        }

    # -- criteria -------------------------------------------------------------------

    def _criteria(self, name: str, payload: dict[str, Any]) -> _Criteria:
        """RequestCriteriaBuilder::parse, collecting errors like SearchRequestException."""
        problems: list[dict[str, Any]] = []
        count_mode = 0
        limit: int | None = None
        offset = 0
        ids: list[str] | None = None
        if payload.get("ids") is not None:
            raw = payload["ids"]
            ids = [i for i in (raw.split("|") if isinstance(raw, str) else raw) if i]
            ids = [str(i).lower() for i in ids]
        else:
            mode = payload.get("total-count-mode")
            if mode is not None:
                text = str(mode)
                if re.fullmatch(r"-?\d+(\.\d+)?", text):
                    count_mode = int(float(text))
                    if not 0 <= count_mode <= 2:
                        count_mode = 0
                else:
                    count_mode = _COUNT_MODES.get(text, 0)
            if payload.get("limit") is not None:
                limit = self._parse_limit(payload["limit"], problems)
            if limit is None:
                limit = self.max_limit
            if payload.get("page") is not None:
                page = payload["page"]
                if page == "" or not _numeric(page):
                    problems.append(self._page_error(page if page != "" else "(empty)"))
                elif int(float(page)) <= 0:
                    problems.append(self._page_error(int(float(page))))
                else:
                    given = payload.get("limit")
                    given_limit = int(float(given)) if given is not None and _numeric(given) else 0
                    offset = given_limit * (int(float(page)) - 1)
        filters: list[tuple[Any, ...]] = []
        raw_filters = payload.get("filter")
        if raw_filters is not None:
            if isinstance(raw_filters, list):
                for index, query in enumerate(raw_filters):
                    parsed = self._parse_filter(name, query, f"/filter/{index}", problems)
                    if parsed is not None:
                        filters.append(parsed)
            elif isinstance(raw_filters, dict):  # simple filter {"field": value}
                for field_name, value in raw_filters.items():
                    filters.append(("equals", self._field(name, field_name), value))
            else:
                problems.append(
                    self._filter_error(
                        "The filter parameter has to be a list of filters.", "/filter"
                    )
                )
        sort: list[tuple[str, bool]] = []
        raw_sort = payload.get("sort")
        if isinstance(raw_sort, list):
            for entry in raw_sort:
                if not isinstance(entry, dict) or "field" not in entry:
                    problems.append(self._sort_error())
                    continue
                descending = str(entry.get("order", "asc")).lower() == "desc"
                sort.append((self._field(name, str(entry["field"])), descending))
        elif isinstance(raw_sort, str):
            parts = [p for p in raw_sort.split(",") if p]
            if not parts:
                problems.append(self._sort_error())
            for part in parts:
                descending = part.startswith("-")
                sort.append((self._field(name, part.lstrip("-")), descending))
        includes = payload.get("includes") if isinstance(payload.get("includes"), dict) else None
        if problems:
            raise ApiError(400, problems)
        return _Criteria(filters, sort, limit, offset, count_mode, ids, includes)

    def _parse_limit(self, raw: Any, problems: list[dict[str, Any]]) -> int | None:
        if raw == "" or not _numeric(raw) or int(float(raw)) <= 0:
            shown = "(empty)" if raw == "" else raw
            problems.append(
                shopware_error(
                    400,
                    "FRAMEWORK__INVALID_LIMIT_QUERY",
                    "The limit parameter must be a positive integer greater or equals than 1. "
                    f"Given: {shown}",
                    {"limit": shown},
                    "/limit",
                )
            )
            return None
        limit = int(float(raw))
        if self.max_limit > 0 and limit > self.max_limit:
            problems.append(
                shopware_error(
                    400,
                    "FRAMEWORK__QUERY_LIMIT_EXCEEDED",
                    f"The limit must be lower than or equal to MAX_LIMIT(={self.max_limit}). "
                    f"Given: {limit}",
                    {"maxLimit": self.max_limit, "limit": limit},
                    "/limit",
                )
            )
            return None
        return limit

    def _page_error(self, page: Any) -> dict[str, Any]:
        return shopware_error(
            400,
            "FRAMEWORK__INVALID_PAGE_QUERY",
            f"The page parameter must be a positive integer. Given: {page}",
            {"page": page},
            "/page",
        )

    def _filter_error(self, message: str, pointer: str) -> dict[str, Any]:
        return shopware_error(400, "FRAMEWORK__INVALID_FILTER_QUERY", message, {}, pointer)

    def _sort_error(self) -> dict[str, Any]:
        return shopware_error(
            400,
            "FRAMEWORK__INVALID_SORT_QUERY",
            "A value for the sort parameter is required.",
            {},
            "/sort",
        )

    def _field(self, name: str, field_name: str) -> str:
        prefix = name + "."
        bare = field_name[len(prefix) :] if field_name.startswith(prefix) else field_name
        if bare not in _FIELDS[name]:
            raise shopware_api_error(
                400,
                "FRAMEWORK__UNMAPPED_FIELD",
                f'Field "{bare}" in entity "{name}" was not found.',
                {"field": bare, "entity": name},
            )
        return bare

    def _parse_filter(
        self, name: str, query: Any, path: str, problems: list[dict[str, Any]]
    ) -> tuple[Any, ...] | None:
        """QueryStringParser::fromArray for the filter types the emulator knows."""
        if not isinstance(query, dict) or not query.get("type"):
            problems.append(self._filter_error("Value for filter type is required.", path))
            return None
        kind = str(query["type"])
        if kind in ("multi", "not"):
            queries = query.get("queries")
            if not isinstance(queries, list) or not queries:
                problems.append(
                    self._filter_error(f'Parameter "queries" for {kind} filter is missing.', path)
                )
                return None
            operator = str(query.get("operator", "and")).lower()
            if operator not in ("and", "or", "&&", "||", "xor"):
                operator = "and"
            operator = {"&&": "and", "||": "or"}.get(operator, operator)
            nested = [
                self._parse_filter(name, q, f"{path}/queries/{i}", problems)
                for i, q in enumerate(queries)
            ]
            if any(n is None for n in nested):
                return None
            return (kind, operator, nested)
        if kind not in ("equals", "equalsAny", "contains", "prefix", "suffix", "range"):
            problems.append(self._filter_error(f"Unsupported filter type: {kind}", path))
            return None
        if not query.get("field"):
            problems.append(
                self._filter_error(f'Parameter "field" for {kind} filter is missing.', path)
            )
            return None
        field_name = self._field(name, str(query["field"]))
        if kind == "range":
            parameters = query.get("parameters")
            if not isinstance(parameters, dict):
                problems.append(
                    self._filter_error('Parameter "parameters" for range filter is missing.', path)
                )
                return None
            return ("range", field_name, parameters)
        if "value" not in query or (kind != "equals" and query["value"] in ("", None, [])):
            problems.append(
                self._filter_error(f'Parameter "value" for {kind} filter is missing.', path)
            )
            return None
        value = query["value"]
        if kind == "equalsAny":
            values = [v for v in value.split("|")] if isinstance(value, str) else list(value)
            for v in values:
                self._check_id_value(name, field_name, v)
            return ("equalsAny", field_name, values)
        if kind == "equals":
            self._check_id_value(name, field_name, value)
        return (kind, field_name, value)

    def _check_id_value(self, name: str, field_name: str, value: Any) -> None:
        if _FIELDS[name][field_name] != "id" or value is None:
            return
        if not isinstance(value, str) or not _HEX32.match(value):
            raise shopware_api_error(
                400,
                "FRAMEWORK__INVALID_UUID",
                f"Value is not a valid UUID: {value}",
                {"input": str(value)},
            )

    def _norm(self, name: str, field_name: str, value: Any) -> Any:
        kind = _FIELDS[name][field_name]
        if value is None:
            return None
        if kind == "text":
            return collation_key(str(value))
        if kind == "id":
            return str(value).lower()
        if kind == "bool":
            if isinstance(value, str):
                return value.lower() not in ("", "0", "false")
            return bool(value)
        return value

    def _matches(self, name: str, row: dict[str, Any], node: tuple[Any, ...]) -> bool:
        kind = node[0]
        if kind in ("multi", "not"):
            operator, nested = node[1], node[2]
            results = [self._matches(name, row, n) for n in nested]
            if operator == "or":
                combined = any(results)
            elif operator == "xor":
                combined = sum(results) == 1
            else:
                combined = all(results)
            return not combined if kind == "not" else combined
        field_name = node[1]
        actual = self._norm(name, field_name, row.get(field_name))
        if kind == "equals":
            return actual == self._norm(name, field_name, node[2])
        if kind == "equalsAny":
            return actual in {self._norm(name, field_name, v) for v in node[2]}
        if kind == "range":
            if actual is None:
                return False
            checks = {
                "gte": lambda a, b: a >= b,
                "gt": lambda a, b: a > b,
                "lte": lambda a, b: a <= b,
                "lt": lambda a, b: a < b,
            }
            try:
                return all(
                    checks[op](actual, self._norm(name, field_name, bound))
                    for op, bound in node[2].items()
                    if op in checks
                )
            except TypeError:
                return False
        if actual is None:
            return False
        text, needle = collation_key(str(actual)), collation_key(str(node[2]))
        if kind == "contains":
            return needle in text
        if kind == "prefix":
            return text.startswith(needle)
        return text.endswith(needle)

    def _candidates(
        self, name: str, criteria: _Criteria
    ) -> tuple[tuple[Any, ...] | None, list[str], list[tuple[Any, ...]]]:
        """(cache key, candidate ids, residual filters) using the best index."""
        table = self._table(name)
        filters = list(criteria.filters)
        if criteria.ids is not None:
            return None, [i for i in dict.fromkeys(criteria.ids) if i in table], filters
        if name == CODE:
            for index, node in enumerate(filters):
                if node[0] not in ("equals", "equalsAny") or node[1] not in (
                    "id",
                    "code",
                    "promotionId",
                ):
                    continue
                values = [node[2]] if node[0] == "equals" else list(node[2])
                rest = filters[:index] + filters[index + 1 :]
                if node[1] == "promotionId" and node[0] == "equals" and node[2] is not None:
                    pid = str(node[2]).lower()
                    return ("promotionId", pid), list(self._by_promotion.get(pid, {})), rest
                found: list[str] = []
                for value in values:
                    if value is None:
                        continue
                    if node[1] == "id":
                        cid = str(value).lower()
                        hit = cid if cid in table else None
                    elif node[1] == "code":
                        hit = self._code_keys.get(collation_key(str(value)))
                    else:
                        found.extend(self._by_promotion.get(str(value).lower(), {}))
                        continue
                    if hit is not None:
                        found.append(hit)
                ordered = [cid for cid in dict.fromkeys(found)]
                return None, ordered, rest
        return ("all",), list(table), filters

    def _select(self, name: str, criteria: _Criteria) -> tuple[list[dict[str, Any]], int]:
        table = self._table(name)
        cache_key, candidates, residual = self._candidates(name, criteria)
        if criteria.sort:
            candidates = self._sorted(name, cache_key, candidates, criteria.sort)
        if residual:
            candidates = [
                cid
                for cid in candidates
                if all(self._matches(name, table[cid], node) for node in residual)
            ]
        offset, limit = criteria.offset, criteria.limit
        page_ids = candidates[offset:] if limit is None else candidates[offset : offset + limit]
        rows = [table[cid] for cid in page_ids]
        matched = len(candidates)
        if criteria.count_mode == 1 or limit is None:
            total = matched
        elif criteria.count_mode == 2:
            total = offset + min(max(matched - offset, 0), limit * 6 + 1)
        else:
            total = len(rows)
        return rows, total

    def _sorted(
        self,
        name: str,
        cache_key: tuple[Any, ...] | None,
        candidates: list[str],
        sort: list[tuple[str, bool]],
    ) -> list[str]:
        key = (name, cache_key, tuple(sort)) if cache_key is not None else None
        if key is not None:
            cached = self._sort_cache.get(key)
            if cached is not None and cached[0] == self._version:
                return cached[1]
        table = self._table(name)
        ordered = list(candidates)
        for field_name, descending in reversed(sort):
            # MySQL puts NULLs first when ascending, last when descending.
            def sort_key(cid: str, f: str = field_name) -> tuple[int, Any]:
                value = self._norm(name, f, table[cid].get(f))
                return (0, "") if value is None else (1, value)

            ordered.sort(key=sort_key, reverse=descending)
        if key is not None:
            if len(self._sort_cache) > 64:
                self._sort_cache.clear()
            self._sort_cache[key] = (self._version, ordered)
        return ordered


class _Missing:
    """Marks a field absent from a payload (distinct from an explicit null)."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _moment(value: Moment) -> str | None:
    """A date as Shopware's JsonEntityEncoder writes a DateTimeField (UTC, milliseconds)."""
    if value is None:
        return None
    moment = _parse_moment(value) if isinstance(value, str) else value
    assert moment is not None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _parse_moment(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value) is not None


def shopware_api_error(
    status: int, code: str, detail: str, parameters: dict[str, Any] | None = None
) -> ApiError:
    """An ApiError holding one ShopwareHttpException entry."""
    return ApiError(status, [shopware_error(status, code, detail, parameters)])
