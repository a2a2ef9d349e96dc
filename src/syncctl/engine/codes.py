"""Stable coupon codes and invite-link parsing.

A coupon code is derived from the Checkout Session id with a secret
(HMAC-SHA256), so a rerun, a crash or a lost state directory always arrives
at the same code for the same purchase: looking it up in Shopware tells
whether it was already created, and no second code is ever minted (rule 1).
The secret keeps codes unguessable from session ids.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_INVITE = re.compile(
    r"^(?:(?:https?://)?(?:www\.)?(?:discord\.gg|discord(?:app)?\.com/invite)/)?"
    r"(?P<code>[A-Za-z0-9-]{2,32})/?$"
)


def coupon_code(session_id: str, secret: str, prefix: str = "VIP-") -> str:
    """`VIP-ABCD-EFGH-JKLM`: 60 bits of HMAC, base32 (no 0/1/8/9 look-alikes)."""
    digest = hmac.new(secret.encode(), session_id.encode(), hashlib.sha256).digest()
    body = base64.b32encode(digest).decode().rstrip("=")[:12]
    return f"{prefix}{body[0:4]}-{body[4:8]}-{body[8:12]}"


def invite_url(code: str) -> str:
    return f"https://discord.gg/{code}"


def invite_code(text: str | None) -> str | None:
    """The invite code in a stored link, whichever form an operator pasted."""
    if not text:
        return None
    match = _INVITE.match(text.strip())
    return match.group("code") if match else None
