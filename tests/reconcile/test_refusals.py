"""Terminal errors: what a service refused as invalid waits until its inputs change."""

from __future__ import annotations

from syncctl.engine.reconcile import reconcile
from syncctl.sandbox.verify import violations

ADA = "ada.lovelace@example.com"
#: Espo's answer when an admin made a Lead field required that syncctl does not send.
INVALID = {"reason": "validationFailure", "messageTranslation": {"data": {"field": "phone"}}}


def refuse_leads(sandbox) -> None:
    sandbox.espocrm.inject(
        method="POST",
        path="/Lead$",
        status=400,
        body=INVALID,
        headers={"X-Status-Reason": "validationFailure"},
        times=None,
    )


def lead_posts(sandbox) -> int:
    return len(sandbox.espocrm.exchanges("POST", "/Lead$"))


def lead_outcome(result, email: str = ADA):
    return next(o for o in result.outcomes if o.key == f"lead:{email}")


def test_a_refused_request_fails_the_run_once(sandbox, config) -> None:
    refuse_leads(sandbox)
    result = reconcile(config)
    assert str(lead_outcome(result).status) == "failed"
    assert result.exit_code(False) == 1


def test_a_refused_request_is_not_retried_by_the_next_runs(sandbox, config) -> None:
    refuse_leads(sandbox)
    reconcile(config)
    posts = lead_posts(sandbox)

    incremental = reconcile(config)
    audit = reconcile(config, full=True)

    assert lead_posts(sandbox) == posts
    assert f"lead:{ADA}" in {o.key for o in incremental.held}
    refused = lead_outcome(audit)
    assert str(refused.status) == "skipped" and "same inputs" in refused.message


def test_the_audit_exits_1_while_a_refusal_is_held(sandbox, config) -> None:
    refuse_leads(sandbox)
    reconcile(config)
    assert reconcile(config, full=True).exit_code(False) == 1
    sandbox.espocrm.clear_faults()
    assert reconcile(config, full=True, retry_refused=True).exit_code(False) == 0


def test_a_refused_request_is_tried_again_once_its_inputs_change(sandbox, config) -> None:
    refuse_leads(sandbox)
    reconcile(config)
    posts = lead_posts(sandbox)
    sandbox.espocrm.clear_faults()
    cid = sandbox.mautic.find(ADA)[0]
    sandbox.mautic.set_fields(cid, lastname="King")

    result = reconcile(config)

    assert str(lead_outcome(result).status) == "done"
    assert lead_posts(sandbox) == posts + 1  # the others' inputs did not change: still waiting


def test_retry_refused_asks_again_with_the_same_inputs(sandbox, config) -> None:
    refuse_leads(sandbox)
    reconcile(config)
    sandbox.espocrm.clear_faults()  # the admin relaxed the required field

    result = reconcile(config, full=True, retry_refused=True)

    assert str(lead_outcome(result).status) == "done"
    assert violations(sandbox, config) == []


def test_a_transient_failure_is_still_retried_every_run(sandbox, config) -> None:
    sandbox.espocrm.inject(method="POST", path="/Lead$", status=503, times=None)
    reconcile(config)
    sandbox.espocrm.clear_faults()

    result = reconcile(config)

    assert str(lead_outcome(result).status) == "done"


def test_a_batch_call_refused_as_a_whole_refuses_nobody_in_it(sandbox, config) -> None:
    # A proxy's 413 or a 400 on the batch itself says nothing about each contact.
    sandbox.mautic.inject(
        method="PATCH",
        path="/batch/edit$",
        status=400,
        body={"errors": [{"code": 400, "message": "bad"}]},
        times=None,
    )
    first = reconcile(config)
    assert first.failed
    assert not any(o.refused for o in first.outcomes)
    sandbox.mautic.clear_faults()

    for _ in range(2):
        result = reconcile(config)
    assert result.ok and violations(sandbox, config) == []
