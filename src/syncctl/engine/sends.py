"""Which of Mautic's logged sends belong to which message.

Mautic's email stats say when an email went to a contact, not which coupon
code or invite link it carried. The journal knows the sends syncctl made;
a send it does not know (after a lost state dir, an interrupted call, or
the old workflows) is matched from the stats. Each send may count once:
the journal's sends claim their stats first, so a second purchase's (or
an earlier link's) email is never taken for the one still missing.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from syncctl.engine.plan import mail_key
from syncctl.state.journal import Journal

K = TypeVar("K")

#: The journal ref of a message deliberately not sent (`reissue-invite
#: --no-email`): done, so no run sends it, yet it claims no logged send.
WAIVED = "waived"
#: Mautic's clock against ours (and Discord's): a send logged this much
#: before what it announces was made still counts.
SEND_SKEW = timedelta(minutes=5)


def recorded_sends(
    journal: Journal, pairs: set[tuple[int, int]], *, bulk: bool = False
) -> dict[tuple[int, int], list[datetime]]:
    """When the journal says each (contact, email id) was sent, for `unclaimed`.

    One query per pair, or with `bulk` one read of each email's rows.
    Waived emails were never sent, so they claim nothing.
    """
    found: dict[tuple[int, int], list[datetime]] = defaultdict(list)
    if not bulk:
        for cid, email_id in pairs:
            rows = journal.done_times(mail_key(email_id, cid, ""), except_ref=WAIVED)
            found[(cid, email_id)] = list(rows.values())
        return found
    for email_id in sorted({eid for _, eid in pairs}):
        for key, moment in journal.done_times(f"mail:{email_id}:", except_ref=WAIVED).items():
            contact = key.split(":")[2]
            if contact.isdigit() and (int(contact), email_id) in pairs:
                found[(int(contact), email_id)].append(moment)
    return found


def unclaimed(
    dates: Iterable[datetime], claims: Iterable[datetime], skew: timedelta = SEND_SKEW
) -> list[datetime]:
    """`dates` less the ones the journal's sends account for, oldest first.

    Each claim (when the journal says a send went out) takes the newest
    logged send at or before it (allowing `skew` between the clocks), else
    the oldest one; claims beyond the logged sends take nothing. A send is
    never logged after the journal recorded it, so a claim never takes a
    later message's send while its own is there.
    """
    left = sorted(dates)
    for claim in sorted(claims):
        if not left:
            break
        newest_before = bisect.bisect_right(left, claim + skew) - 1
        del left[max(newest_before, 0)]
    return left


def match_sends(
    dates: Iterable[datetime],
    items: Sequence[tuple[K, datetime]],
    skew: timedelta,
) -> dict[K, datetime]:
    """The items (key, made at) a logged send accounts for, with that send's time.

    Sends are taken oldest first; each goes to the newest unmatched item made
    before it (allowing `skew` between the clocks). Messages go out right
    after what they announce is made, so an older item left without a send
    is the one still missing, not the newer one.
    """
    waiting = sorted(items, key=lambda item: item[1])
    matched: dict[K, datetime] = {}
    for sent in sorted(dates):
        made_before = [i for i, (_, made) in enumerate(waiting) if made - skew <= sent]
        if made_before:
            key, _ = waiting.pop(made_before[-1])
            matched[key] = sent
    return matched
