"""The planner's vocabulary: action keys, email ids, channel ids, names.

Shared by the planning rules and by the modules that read the journal's
keys back (observe, status, recovery).
"""

from __future__ import annotations

from datetime import timedelta

from syncctl.config import Settings
from syncctl.engine.model import (
    Tier,
)

NEW = "new"  # stands for an id that only exists once an earlier action ran
#: The subject of an orphan invite's revocation: nobody holds it.
ORPHAN_SUBJECT = "(nobody)"
#: Why a contact gets no email (rule 19).
DNC_NOTE = "on Mautic's Do-Not-Contact list"
#: Discord's clock against ours, for the orphan sweep's age check.
ORPHAN_MARGIN = timedelta(seconds=10)


def invite_email_id(settings: Settings, tier: Tier) -> int:
    m = settings.mautic
    return m.invite_email_vip if tier is Tier.VIP else m.invite_email_basic


def channel_id(settings: Settings, tier: Tier) -> str:
    d = settings.discord
    return d.vip_channel_id if tier is Tier.VIP else d.basic_channel_id


def mail_key(email_id: int, contact_id: int | str, ref: str) -> str:
    return f"mail:{email_id}:{contact_id}:{ref}"


def split_name(name: str | None) -> tuple[str, str]:
    """Stripe captures one name; Mautic and Espo want first and last."""
    parts = (name or "").split()
    if not parts:
        return "", ""
    return " ".join(parts[:-1]) if len(parts) > 1 else parts[0], parts[-1] if len(parts) > 1 else ""
