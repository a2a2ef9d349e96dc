"""Rule 17's evidence: which purchases Stripe shows fully refunded or disputed.

Stripe never changes a Checkout Session for a refund or a dispute: they show
on the charge of the session's PaymentIntent, as events (what an incremental
run reads, in the same paged read as new purchases) or on the charges list
(what a full run reads). `Troubles` folds what one run read into one state
per payment; `merge` puts it on the run's purchases, with what earlier runs
wrote down (`refund:<session>` rows), since a refund's event is read once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from syncctl.clients.stripe import PaymentTrouble
from syncctl.engine.model import Purchase

#: Journal key prefix of what a run learned about a purchase's payment.
REFUND_PREFIX = "refund:"
#: The journal's word for "a dispute recorded before was won": no trouble now.
CLEARED = "cleared"
#: The journal row kind of those facts (`history` shows them).
REFUND_KIND = "refund"


def refund_key(session_id: str) -> str:
    return f"{REFUND_PREFIX}{session_id}"


class Troubles:
    """What one run read about payments, newest first, per PaymentIntent.

    A full refund is final. A dispute's newest state decides: one won (or an
    inquiry closed) is no trouble, and says so, so that a purchase an
    earlier run withdrew for it counts again. A partial refund says nothing.
    """

    def __init__(self) -> None:
        self._refunded: set[str] = set()
        self._dispute_won: dict[str, bool] = {}

    def add(self, trouble: PaymentTrouble) -> None:
        intent = trouble.payment_intent
        if trouble.kind == "refunded":
            if trouble.full:
                self._refunded.add(intent)
        else:
            self._dispute_won.setdefault(intent, trouble.dispute_won)  # the newest comes first

    def state(self, payment_intent: str | None) -> str | None:
        """The payment's state: refunded, disputed, "" (seen, no trouble) or None (unseen)."""
        if payment_intent is None:
            return None
        if payment_intent in self._refunded:
            return "refunded"
        won = self._dispute_won.get(payment_intent)
        if won is None:
            return None
        return "" if won else "disputed"

    def seen(self) -> set[str]:
        """PaymentIntents whose purchase the run must look at: troubled, or a dispute won."""
        return self._refunded | set(self._dispute_won)


def recorded_trouble(refs: Mapping[str, str], session_id: str) -> str:
    """What the journal's `refund:` row says now ("" for none or cleared)."""
    ref = refs.get(refund_key(session_id), "")
    return "" if ref == CLEARED else ref


def merge(
    purchases: dict[str, Purchase],
    troubles: Troubles,
    refs: Mapping[str, str],
    *,
    revoke: bool,
) -> dict[str, Purchase]:
    """The purchases with their trouble: this run's reading, else the journal's.

    `refs`: the journal's `refund:` rows of these sessions (`done_refs`).
    `revoke`: `[stripe] on_refund = "revoke"`, under which trouble withdraws.
    """
    out = dict(purchases)
    for sid, p in purchases.items():
        seen = troubles.state(p.payment_intent)
        trouble = seen if seen is not None else recorded_trouble(refs, sid)
        if trouble:
            out[sid] = replace(p, trouble=trouble, withdrawn=revoke)
    return out


def reinstated(purchases: Mapping[str, Purchase], refs: Mapping[str, str]) -> set[str]:
    """Sessions the journal knew in trouble that count again now (a dispute won):
    what syncctl withdrew for them it puts back (rule 17), without an email."""
    return {sid for sid, p in purchases.items() if not p.trouble and refund_key(sid) in refs}


def news(purchases: Iterable[Purchase], refs: Mapping[str, str]) -> list[tuple[str, Purchase, str]]:
    """(key, purchase, ref) for each purchase whose trouble the journal does not hold yet.

    A purchase's trouble comes from the journal unless this run read
    otherwise, so a difference is news: a new refund or dispute, or a
    dispute won (written down as `CLEARED`).
    """
    found = []
    for p in purchases:
        key = refund_key(p.session_id)
        before = refs.get(key)
        now = p.trouble or (CLEARED if before not in (None, CLEARED) else None)
        if now is not None and now != before:
            found.append((key, p, now))
    return found
