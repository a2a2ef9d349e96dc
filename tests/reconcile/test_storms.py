"""A run settles what vendor trouble left undone before it ends (issue 11.2).

A write whose answer was lost is checked against the service in the same
run and retried only when it verifiably did not happen; through a storm of
503s, cut connections and 429 bursts, a campaign converges within a few runs
with every side effect exactly once.
"""

from __future__ import annotations

import pytest
from benchmarks.storm import run_seed, summary

from syncctl.engine.apply import SETTLED, UNRESOLVED, Outcome, Status
from syncctl.engine.model import Action, ActionKind
from syncctl.engine.reconcile import reconcile
from syncctl.engine.settle import unfinished
from syncctl.sandbox.verify import violations


def outcome(key: str, status: Status, message: str = "", **kw) -> Outcome:
    action = Action(ActionKind.LEAD, key, "a@example.com", "test")
    return Outcome(action, status, key, message=message, **kw)


# -- what is worth another attempt (pure) ---------------------------------------------


def test_transient_failures_and_unknown_outcomes_are_tried_again() -> None:
    outcomes = [
        outcome("a", Status.FAILED, "503", transient=True, retry=True),
        outcome("b", Status.SKIPPED, UNRESOLVED, retry=True),
        outcome("c", Status.DONE),
    ]
    assert [o.key for o in unfinished(outcomes)] == ["a", "b"]


def test_what_waited_on_a_retried_action_is_tried_again_too() -> None:
    outcomes = [
        outcome("a", Status.FAILED, "503", transient=True, retry=True),
        outcome("b", Status.SKIPPED, "waits for a", retry=True),
        outcome("c", Status.SKIPPED, "waits for z", retry=True),
    ]
    assert [o.key for o in unfinished(outcomes)] == ["a", "b"]


def test_refusals_and_conflicts_are_not_retried_in_the_same_run() -> None:
    outcomes = [
        outcome("a", Status.FAILED, "400", refused=True),
        outcome("b", Status.FAILED, "conflict: field holds another link", retry=True),
        outcome("c", Status.SKIPPED, "not attempted: discord rejected the credentials"),
    ]
    assert unfinished(outcomes) == []


# -- one lost answer, settled in the same run -----------------------------------------


def test_a_lead_whose_answer_was_lost_is_found_not_created_again(sandbox, config) -> None:
    sandbox.espocrm.inject(method="POST", path="/Lead$", kind="reset", when="after")
    result = reconcile(config)
    assert result.ok, [o.message for o in result.failed]
    leads = [o for o in result.outcomes if str(o.action.kind) == "create_lead"]
    assert SETTLED in {o.message for o in leads}
    assert result.settled.rounds == 1
    assert violations(sandbox, config) == []  # one lead each


def test_an_email_cut_off_before_it_reached_mautic_is_sent_once_in_the_same_run(
    sandbox, config
) -> None:
    sandbox.mautic.inject(method="POST", path="/send$", kind="reset", when="before")
    result = reconcile(config)
    assert result.ok, [o.message for o in result.failed]
    assert [r.result for r in result.settled.resolutions] == ["aborted"]
    assert violations(sandbox, config) == []


def test_an_email_sent_whose_answer_was_lost_is_not_sent_again(sandbox, config) -> None:
    sandbox.mautic.inject(method="POST", path="/send$", kind="reset", when="after")
    result = reconcile(config)
    assert result.ok
    assert [r.result for r in result.settled.resolutions] == ["done"]
    assert violations(sandbox, config) == []  # one email each, none twice


def test_an_invite_minted_whose_answer_was_lost_is_stored_not_minted_again(sandbox, config) -> None:
    sandbox.discord.inject(method="POST", path="/invites$", kind="reset", when="after")
    result = reconcile(config)
    assert result.ok, [o.message for o in result.failed]
    planned = [a for a in result.plan.actions if str(a.kind) == "issue_invite"]
    assert sandbox.discord.created_count == len(planned)  # none minted twice
    assert violations(sandbox, config) == []


def test_trouble_that_outlasts_the_rounds_stays_pending_for_the_next_run(sandbox, config) -> None:
    sandbox.espocrm.inject(method="POST", path="/Lead$", status=503, times=None)
    first = reconcile(config)
    assert not first.ok and first.settled.rounds == 3
    sandbox.espocrm.clear_faults()
    reconcile(config)
    assert violations(sandbox, config) == []


# -- the storm: 20 seeds --------------------------------------------------------------


@pytest.mark.slow
def test_a_campaign_converges_through_a_storm_within_3_runs_for_19_of_20_seeds(
    tmp_path,
) -> None:
    results = [run_seed(seed, state_root=tmp_path) for seed in range(20)]
    figures = summary(results, max_runs=3)
    assert figures["duplicates"] == 0, [r.duplicates for r in results if r.duplicates]
    assert figures["calm_run_clean"] == 20, [(r.seed, r.calm_problems) for r in results]
    assert figures["converged_within_max_runs"] >= 19, figures["runs_needed"]
