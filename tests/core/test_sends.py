"""Matching Mautic's logged sends to messages: each send counts once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncctl.engine.sends import match_sends, unclaimed

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_each_recorded_send_claims_the_newest_logged_send_at_or_before_it() -> None:
    assert unclaimed([at(0), at(60), at(120)], [at(61)]) == [at(0), at(120)]


def test_a_claim_never_takes_a_later_send_while_its_own_is_there() -> None:
    # Adopted long after its send: the new message's send is nearer, but not its own.
    assert unclaimed([at(0), at(100)], [at(90)]) == [at(100)]


def test_a_claim_logged_ahead_of_every_send_takes_the_nearest() -> None:
    assert unclaimed([at(10), at(50)], [at(0)]) == [at(50)]


def test_claims_beyond_the_logged_sends_take_nothing_more() -> None:
    assert unclaimed([at(0)], [at(0), at(30)]) == []


def test_without_claims_every_logged_send_is_left() -> None:
    assert unclaimed([at(9), at(1)], []) == [at(1), at(9)]


def test_a_send_goes_to_the_newest_item_made_before_it() -> None:
    older, newer = ("P1", at(0)), ("P2", at(30))
    assert match_sends([at(31)], [older, newer], SKEW) == {"P2": at(31)}


def test_each_send_accounts_for_one_item_only() -> None:
    items = [("P1", at(0)), ("P2", at(1))]
    assert set(match_sends([at(2)], items, SKEW)) == {"P2"}
    assert set(match_sends([at(2), at(3)], items, SKEW)) == {"P1", "P2"}


def test_a_send_logged_before_the_item_was_made_is_not_its_own() -> None:
    assert match_sends([at(-10)], [("P1", at(0))], SKEW) == {}


def test_clock_skew_within_the_allowance_still_matches() -> None:
    assert match_sends([at(-4)], [("P1", at(0))], SKEW) == {"P1": at(-4)}
