"""What the original design (one n8n execution per change) costs for a day of churn.

Derived step by step from the two workflows of the seed
(../shared/mission/seed-roadmap.txt); docs/benchmarks.md shows the same
derivation as a table. Conventions, chosen in n8n's favour:

- "API calls" are the calls a workflow makes to a vendor API. The webhook
  deliveries that trigger an execution (Mautic -> n8n, Stripe -> n8n) are
  counted apart, as `webhooks`, and left out of the comparison.
- Checks on data the trigger already carries (opt-in, "does the link
  exist?", "was the payment successful?") cost nothing; a step that says
  "re-fetch" or "retrieve" costs one call, and so does "check if the link
  was successfully added" (it reads the contact back).
- The Shopware OAuth token is assumed cached by n8n's credential (0 calls).
- The EspoCRM sync runs on every opted-in execution of Workflow 1 (its goal
  is "ensure a lead exists"): one search, plus one create when missing.

Workflow 1 (Mautic "Contact Updated"), opted in, no link of the tier yet:
    re-fetch contact 1 + create Discord invite 1 + update Mautic 1
    + read back the link 1 + send invite email 1 + search Espo lead 1
    (+ create lead 1)                                     = 6 (7) calls
  ... and the update it made fires "Contact Updated" again: a second
  execution that finds the link and only syncs Espo       = 1 call
Workflow 1, opted in, link present (any other edit)       = 1 call (Espo search)
Workflow 1, not opted in                                  = 0 calls
Workflow 2 (Stripe checkout.session.completed):
    look up the session's line items 1; not VIP: stop     = 1 call
    VIP: lookup 1 + create the Shopware code 1 + find the Mautic
    contact 1 + update it 1 + send the coupon email 1     = 5 calls
  ... whose Mautic update fires Workflow 1 for the buyer (opted in and
  without a VIP link: the 6 + 1 above; not opted in: 0); a buyer missing
  from Mautic stops the workflow after the search         = 3 calls
So the common path, a change that needs an invite, is 7 API calls plus the
webhook that triggered it: the "about 8" of the issue.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

WF1_INVITE = 6  # re-fetch, create invite, update, read back, send, Espo search
WF1_ESPO_CREATE = 1
WF1_ECHO = 1  # the execution fired by its own update: Espo search
WF1_OTHER_EDIT = 1  # opted in, link present: Espo search
WF2_LOOKUP = 1
WF2_VIP = 5
WF2_UNKNOWN_BUYER = 3

#: change kind -> (executions, webhooks, API calls, how)
COSTS: dict[str, tuple[int, int, int, str]] = {
    "signup (opted in)": (
        2,
        2,
        WF1_INVITE + WF1_ESPO_CREATE + WF1_ECHO,
        "WF1 invite path with lead create (7) + echo execution (1)",
    ),
    "signup (pending opt-in)": (1, 1, 0, "WF1 stops at the opt-in check"),
    "opt-in confirmed": (
        2,
        2,
        WF1_INVITE + WF1_ESPO_CREATE + WF1_ECHO,
        "as an opted-in sign-up: invite path (7) + echo (1)",
    ),
    "profile edit (opted in)": (1, 1, WF1_OTHER_EDIT, "WF1: link present, Espo search (1)"),
    "profile edit (not opted in)": (1, 1, 0, "WF1 stops at the opt-in check"),
    "opt-out": (1, 1, 0, "WF1 stops at the opt-in check"),
    "VIP purchase (upgrade)": (
        3,
        3,
        WF2_VIP + WF1_INVITE + WF1_ECHO,
        "WF2 (5) + WF1 VIP invite path, lead exists (6) + echo (1)",
    ),
    "VIP purchase (not opted in)": (2, 2, WF2_VIP, "WF2 (5) + WF1 stops at opt-in (0)"),
    "VIP purchase (new person)": (1, 1, WF2_UNKNOWN_BUYER, "WF2 stops: no Mautic contact (3)"),
    "supporter purchase": (1, 1, WF2_LOOKUP, "WF2 stops: not VIP (1)"),
    "abandoned checkout": (0, 0, 0, "no completed event: nothing runs"),
    "invite reissue": (
        2,
        2,
        WF1_INVITE + WF1_ECHO,
        "WF1 invite path, lead exists (6) + echo (1)",
    ),
}


def cost(kinds: Counter[str]) -> dict[str, Any]:
    """Executions, webhooks and API calls the n8n design spends on these changes."""
    rows = []
    total = Counter[str]()
    for kind, count in sorted(kinds.items()):
        executions, webhooks, calls, how = COSTS[kind]
        api = count * calls
        rows.append(
            {
                "kind": kind,
                "changes": count,
                "executions": count * executions,
                "webhooks": count * webhooks,
                "api_calls": api,
                "per_change": calls,
                "how": how,
            }
        )
        total["changes"] += count if executions else 0
        total["executions"] += count * executions
        total["webhooks"] += count * webhooks
        total["api_calls"] += api
    return {"rows": rows, "total": dict(total)}
