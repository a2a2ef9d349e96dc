"""`syncctl export`: one row per purchase and per opted-in contact, streamed, from the journal.

What finance and fulfilment read: each purchase's code and coupon email,
each contact's invite and its email, the lead, holds and refunds; with
--live, what the services say now (code exists or redeemed, invite live,
opt-in, Do-Not-Contact, the hold tag).
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import stat
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import Result

from syncctl import config as config_mod
from syncctl.commands.export import COLUMNS, Row, contact_row, purchase_row
from syncctl.config import SECRET_NAMES
from syncctl.engine.reconcile import reconcile
from syncctl.errors import StateError
from syncctl.sandbox.stack import Sandbox
from syncctl.state.journal import EntryState, Journal
from syncctl.state.lock import state_lock
from syncctl.state.reports import ContactFacts, PurchaseFacts
from tests.ops.conftest import Run, one_error_line, run_in, seed_purchases, set_secret

ADA = "ada.lovelace@example.com"
GRACE = "grace.hopper@example.com"
MILES = "miles.o'brien@example.com"
#: The demo's VIP buyers (paid) and its opted-in contacts.
BUYERS = {ADA, "alan.turing@example.com", "katherine.johnson@example.com"}
OPTED_IN = {ADA, GRACE, "katherine.johnson@example.com", MILES}
#: Holding the 100k rows at once takes some 52 MiB (measured: a tuple and its strings a row).
MEMORY_BOUND = 10 * 1024 * 1024


@pytest.fixture
def reconciled(config: config_mod.Config) -> config_mod.Config:
    """The demo campaign after one successful run."""
    assert reconcile(config).ok
    return config


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def exported(run: Run, *args: str) -> list[dict[str, str]]:
    result = run("export", *args)
    assert result.exit_code == 0, result.output
    return rows_of(result.stdout)


def purchases(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r["record"] == "purchase"]


def contacts(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {r["email"]: r for r in rows if r["record"] == "contact"}


def session_of(sandbox: Sandbox, email: str) -> str:
    (found,) = [
        s["id"] for s in sandbox.stripe.sessions if s["customer_details"]["email"].lower() == email
    ]
    return str(found)


def write_fact(config: config_mod.Config, key: str, kind: str, subject: str, ref: str) -> None:
    """A done journal entry, written as runs write theirs."""
    with Journal.open(config.settings.run.state_path) as journal:
        entry = journal.start(key, kind, subject, run_id=None)
        journal.mark(entry, EntryState.DONE, ref=ref)


# -- rows against what the sandbox holds ---------------------------------------------------


def test_one_purchase_row_per_vip_purchase_with_the_code_shopware_holds(
    run: Run, reconciled, sandbox: Sandbox
) -> None:
    rows = purchases(exported(run))
    promotion = reconciled.settings.shopware.vip_promotion_id
    assert {r["email"] for r in rows} == BUYERS
    assert {r["session_id"] for r in rows} == {session_of(sandbox, e) for e in BUYERS}
    assert {r["coupon_code"] for r in rows} == {
        c["code"] for c in sandbox.shopware.codes(promotion)
    }
    assert all(r["tier"] == "vip" and r["coupon"] == "created" for r in rows)


def test_a_purchase_row_says_when_its_coupon_email_went_to_which_contact(
    run: Run, reconciled, sandbox: Sandbox
) -> None:
    coupon_email = reconciled.settings.mautic.coupon_email
    for row in purchases(exported(run)):
        (sent,) = sandbox.mautic.sent(coupon_email, int(row["contact_id"]))
        assert sent["tokens"]["{promo_code}"] == row["coupon_code"]
        assert sandbox.mautic.contact(int(row["contact_id"]))["email"].lower() == row["email"]
        assert row["coupon_email_sent_at"].endswith("+00:00")


def test_one_contact_row_per_opted_in_contact_with_the_invite_mautic_holds(
    run: Run, reconciled, sandbox: Sandbox
) -> None:
    rows = contacts(exported(run))
    assert set(rows) == OPTED_IN  # Edsger never opted in; Alan's contact was made for his purchase
    for row in rows.values():
        fields = sandbox.mautic.contact(int(row["contact_id"]))
        link = fields[f"discord_invite_link_{row['tier']}"]
        assert link == f"https://discord.gg/{row['invite_code']}"
        assert row["invite_email_sent_at"]
    # Katherine had a Basic invite, then bought VIP: one row, with the VIP invite.
    assert rows["katherine.johnson@example.com"]["tier"] == "vip"
    assert {e for e, r in rows.items() if r["tier"] == "basic"} == {GRACE, MILES}


def test_a_contact_row_holds_the_espo_lead(run: Run, reconciled, sandbox: Sandbox) -> None:
    espo = {lead["emailAddressData"][0]["lower"]: lead["id"] for lead in sandbox.espocrm.leads()}
    rows = contacts(exported(run))
    assert set(rows) <= set(espo)
    for email, row in rows.items():
        if row["lead"] == "created":
            assert row["lead_id"] == espo[email]
    # Grace's lead existed before syncctl: found, and the journal has no id for it.
    assert (rows[GRACE]["lead"], rows[GRACE]["lead_id"]) == ("found", "")


def test_a_contact_on_the_do_not_contact_list_has_a_row_with_its_lead_and_no_invite(
    run: Run, config, sandbox: Sandbox
) -> None:
    (miles,) = sandbox.mautic.find(MILES)
    sandbox.mautic.add_dnc(miles)  # before any run: opted in, but no invite (rule 19)
    assert reconcile(config).ok
    row = contacts(exported(run))[MILES]
    assert (row["contact_id"], row["invite_code"], row["invite_state"]) == (str(miles), "", "")
    assert row["lead"] == "created" and row["lead_id"]


def test_json_is_one_document_holding_the_rows_of_the_csv(run: Run, reconciled) -> None:
    result = run("export", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["format_version"], document["live"]) == (1, False)
    assert document["counts"] == {"purchases": 3, "contacts": 4}
    assert document["service_errors"] == {}

    def as_csv(value: object) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        return "" if value is None else str(value)

    as_text = [{k: as_csv(v) for k, v in row.items()} for row in document["rows"]]
    assert as_text == exported(run)
    assert list(document["rows"][0]) == list(COLUMNS)


# -- journal only, by default ---------------------------------------------------------------------


def test_by_default_no_service_is_called_and_no_secret_is_needed(
    run: Run, reconciled, sandbox: Sandbox, campaign: Path
) -> None:
    sandbox.clear_logs()
    for name in SECRET_NAMES:
        set_secret(campaign, name, None)
    rows = exported(run)
    assert len(rows) == 7
    assert sandbox.call_count() == 0
    # What only the services know is left empty.
    assert {r["coupon_exists"] for r in rows} | {r["dnc"] for r in rows} == {""}
    assert {r["invite_state"] for r in contacts(rows).values()} == {"unknown"}


def test_without_a_journal_it_is_the_header_alone_and_creates_nothing(run: Run, config) -> None:
    result = run("export")
    assert result.exit_code == 0, result.output
    assert result.stdout == ",".join(COLUMNS) + "\n"
    assert not config.settings.run.state_path.exists()


def test_it_does_not_wait_for_a_run_holding_the_lock(run: Run, reconciled) -> None:
    with state_lock(reconciled.settings.run.state_path):
        assert len(exported(run)) == 7


def test_a_refund_the_journal_holds_shows_in_its_purchase_row(
    run: Run, reconciled, sandbox: Sandbox
) -> None:
    session = session_of(sandbox, ADA)
    write_fact(reconciled, f"refund:{session}", "refund", ADA, "refunded")
    refunds = {r["session_id"]: r["refund"] for r in purchases(exported(run))}
    assert refunds.pop(session) == "refunded"
    assert set(refunds.values()) == {""}


def test_a_refund_a_run_acted_on_shows_on_the_purchase_row(
    run: Run, reconciled, sandbox: Sandbox
) -> None:
    sandbox.stripe.refund(session_of(sandbox, ADA))
    assert run("reconcile").exit_code == 0
    (row,) = [r for r in purchases(exported(run)) if r["email"] == ADA]
    assert row["refund"] == "refunded"


def test_a_dispute_won_shows_no_refund(run: Run, reconciled, sandbox: Sandbox) -> None:
    session = session_of(sandbox, ADA)
    write_fact(reconciled, f"refund:{session}", "refund", ADA, "cleared")
    assert {r["refund"] for r in purchases(exported(run))} == {""}


def test_a_purchase_disputed_before_its_code_was_made_has_a_row(run: Run, config) -> None:
    write_fact(config, "refund:cs_test_early", "refund", "early@example.com", "disputed")
    (row,) = exported(run)
    assert (row["record"], row["session_id"], row["email"]) == (
        "purchase",
        "cs_test_early",
        "early@example.com",
    )
    assert (row["refund"], row["coupon"], row["coupon_code"]) == ("disputed", "", "")


def test_a_person_held_is_held_on_each_of_their_rows(run: Run, reconciled) -> None:
    assert run("hold", ADA, "--reason", "chargeback dispute").exit_code == 0
    rows = [r for r in exported(run) if r["email"] == ADA]
    assert [r["record"] for r in rows] == ["purchase", "contact"]
    assert {(r["hold"], r["hold_reason"]) for r in rows} == {("person", "chargeback dispute")}


def test_a_purchase_held_is_held_on_its_row_only(run: Run, reconciled, sandbox: Sandbox) -> None:
    assert run("hold", session_of(sandbox, ADA), "--reason", "fraud check").exit_code == 0
    rows = exported(run)
    held = [(r["record"], r["email"], r["hold"]) for r in rows if r["hold"]]
    assert held == [("purchase", ADA, "purchase")]


def test_an_invite_syncctl_revoked_is_revoked(
    run: Run, reconciled, sandbox: Sandbox, config
) -> None:
    # Grace withdraws her opt-in: the next run revokes her unused invite (rule 20).
    (grace,) = sandbox.mautic.find(GRACE)
    sandbox.mautic.set_fields(grace, opt_in_confirmed=False)
    assert reconcile(config).ok
    assert contacts(exported(run))[GRACE]["invite_state"] == "revoked"


def test_free_text_cannot_run_as_a_spreadsheet_formula(run: Run, reconciled) -> None:
    formula = '=HYPERLINK("https://evil.example.com","x")'
    assert run("hold", ADA, "--reason", formula).exit_code == 0
    (row,) = [r for r in purchases(exported(run)) if r["email"] == ADA]
    assert row["hold_reason"] == "'" + formula
    document = json.loads(run("export", "--format", "json").stdout)
    assert {r["hold_reason"] for r in document["rows"] if r["email"] == ADA} == {formula}


# -- --live: what the services say now ------------------------------------------------------------


def test_live_says_each_code_exists_and_whether_an_order_redeemed_it(
    run: Run, reconciled, sandbox: Sandbox
) -> None:
    code = next(r["coupon_code"] for r in purchases(exported(run)) if r["email"] == ADA)
    sandbox.shopware.redeem_code(code, order_id="a" * 32)
    rows = {r["email"]: r for r in purchases(exported(run, "--live"))}
    assert (rows[ADA]["coupon_exists"], rows[ADA]["coupon_redeemed"]) == ("yes", "yes")
    assert rows[ADA]["coupon_order_id"] == "a" * 32
    others = [r for e, r in rows.items() if e != ADA]
    assert {(r["coupon_exists"], r["coupon_redeemed"], r["coupon_order_id"]) for r in others} == {
        ("yes", "no", "")
    }


def test_live_asks_each_service_once_a_page_and_never_writes(
    run: Run, reconciled, sandbox: Sandbox
) -> None:
    sandbox.clear_logs()
    assert len(exported(run, "--live")) == 7  # one page of purchases, one of contacts
    assert len(sandbox.shopware.exchanges("POST", r"/search/promotion-individual-code")) == 1
    assert len(sandbox.mautic.exchanges("GET", r"^/api/contacts")) == 2
    assert len(sandbox.discord.exchanges("GET", r"/channels/\d+/invites")) == 2
    assert sandbox.stripe.exchanges() == [] and sandbox.espocrm.exchanges() == []
    assert sandbox.write_count() == 0


def test_live_finds_a_code_the_journal_made_missing_from_shopware(run: Run, reconciled) -> None:
    # As if someone deleted it in Shopware's admin after syncctl made it.
    write_fact(reconciled, "coupon:cs_test_gone", "create_coupon", ADA, "VIP-GONE-GONE-GONE")
    (row,) = [r for r in purchases(exported(run, "--live")) if r["session_id"] == "cs_test_gone"]
    assert (row["coupon"], row["coupon_exists"], row["coupon_redeemed"]) == ("created", "no", "no")


def test_live_tells_a_live_invite_from_a_used_one(run: Run, reconciled, sandbox: Sandbox) -> None:
    rows = contacts(exported(run, "--live"))
    assert {r["invite_state"] for r in rows.values()} == {"live"}
    sandbox.discord.use_invite(rows[ADA]["invite_code"])  # single use: Discord deletes it
    states = {e: r["invite_state"] for e, r in contacts(exported(run, "--live")).items()}
    assert states.pop(ADA) == "used"
    assert set(states.values()) == {"live"}


def test_live_reports_opt_in_do_not_contact_and_the_hold_tag(
    run: Run, reconciled, sandbox: Sandbox
) -> None:
    (miles,) = sandbox.mautic.find(MILES)
    (ada,) = sandbox.mautic.find(ADA)
    sandbox.mautic.add_dnc(miles)
    sandbox.mautic.add_tag(ada, "syncctl-hold")
    rows = exported(run, "--live")
    people = contacts(rows)
    assert (people[MILES]["opt_in"], people[MILES]["dnc"]) == ("yes", "yes")
    assert (people[GRACE]["opt_in"], people[GRACE]["dnc"]) == ("yes", "no")
    held = {(r["record"], r["hold"], r["hold_reason"]) for r in rows if r["email"] == ADA}
    tag = "Mautic tag syncctl-hold"
    assert held == {("purchase", "tag", tag), ("contact", "tag", tag)}
    # Alan's contact was made for his purchase: he never opted in.
    alan = next(r for r in purchases(rows) if r["email"] == "alan.turing@example.com")
    assert alan["opt_in"] == "no"


def test_live_with_a_service_down_leaves_its_columns_empty_and_exits_1(
    run: Run, reconciled, sandbox: Sandbox
) -> None:
    sandbox.shopware.inject(method="POST", path=r"/search/promotion-individual-code", times=None)
    result = run("export", "--live")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("syncctl: error")]
    assert len(errors) == 1 and "could not read shopware" in errors[0]
    assert "Traceback" not in result.output
    rows = rows_of(result.stdout)
    assert len(rows) == 7  # the rest is all there
    assert {r["coupon_exists"] for r in purchases(rows)} == {""}
    assert {r["opt_in"] for r in contacts(rows).values()} == {"yes"}  # Mautic answered
    document = json.loads(run("export", "--live", "--format", "json").stdout)
    assert list(document["service_errors"]) == ["shopware"]


def test_live_needs_the_secrets_and_writes_nothing_without_them(
    run: Run, reconciled, campaign: Path, tmp_path: Path
) -> None:
    set_secret(campaign, "DISCORD_BOT_TOKEN", None)
    out = tmp_path / "out" / "backers.csv"
    out.parent.mkdir()
    result = run("export", "--live", "--output", str(out))
    assert result.exit_code == 2
    assert "DISCORD_BOT_TOKEN" in one_error_line(result)
    assert list(out.parent.iterdir()) == []


def test_no_secret_appears_in_a_live_export(run: Run, reconciled, campaign: Path) -> None:
    secrets = [
        value
        for line in (campaign / ".env").read_text().splitlines()
        if "=" in line and (value := line.split("=", 1)[1].strip())
    ]
    assert len(secrets) >= 5
    for fmt in ("csv", "json"):
        result = run("export", "--live", "--format", fmt)
        assert result.exit_code == 0, result.output
        assert [s for s in secrets if s in result.output] == []


# -- the output file ---------------------------------------------------------------------------


def test_output_appears_whole_and_owner_only_and_stdout_stays_empty(
    run: Run, reconciled, tmp_path: Path
) -> None:
    out = tmp_path / "finance" / "backers.csv"
    out.parent.mkdir()
    result = run("export", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"exported 3 purchase(s) and 4 contact(s) to {out}" in result.stderr
    assert len(rows_of(out.read_text())) == 7
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # it holds personal data
    assert list(out.parent.iterdir()) == [out]


def test_a_failure_midway_keeps_the_previous_file_and_leaves_no_temporary_one(
    run: Run, reconciled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "finance" / "backers.csv"
    out.parent.mkdir()
    out.write_text("yesterday's export\n")

    def broken(*args: object, **kwargs: object) -> Row:
        raise StateError("cannot read the journal: disk I/O error")

    # The purchase rows are written; the first contact row fails.
    monkeypatch.setattr("syncctl.commands.export.contact_row", broken)
    result = run("export", "--output", str(out))
    assert result.exit_code == 1
    assert "disk I/O error" in one_error_line(result)
    assert out.read_text() == "yesterday's export\n"
    assert list(out.parent.iterdir()) == [out]


def test_output_into_a_missing_folder_is_one_line_exit_2(run: Run, tmp_path: Path) -> None:
    result = run("export", "--output", str(tmp_path / "nowhere" / "backers.csv"))
    assert result.exit_code == 2
    assert "does not exist" in one_error_line(result)


def test_an_unknown_format_is_a_usage_error_exit_2(run: Run) -> None:
    result: Result = run("export", "--format", "xlsx")
    assert result.exit_code == 2
    assert "--format" in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def test_a_reader_that_goes_away_ends_it_quietly(offline_campaign: Path) -> None:
    """`syncctl export | head -1`: no traceback when the pipe closes early."""
    seed_purchases(offline_campaign / ".syncctl-state", 20_000)  # more than a pipe holds
    config = str(offline_campaign / "syncctl.toml")
    with subprocess.Popen(
        [sys.executable, "-m", "syncctl", "--config", config, "export"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith("record,email,")
        process.stdout.close()
        stderr = process.stderr.read()
        assert process.wait(timeout=60) == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


# -- rows from facts alone (pure) --------------------------------------------------------------


def test_a_purchase_row_is_made_from_the_journal_facts_alone(settings) -> None:
    facts = PurchaseFacts(
        session_id="cs_test_1",
        email="ada@example.com",
        coupon_state=EntryState.DONE,
        code="VIP-AAAA-BBBB-CCCC",
        coupon_observed=False,
        refund="disputed",
        contact_id=7,
        mail_sent_at="2024-05-01T12:00:00+00:00",
    )
    assert purchase_row(facts, settings) == Row(
        record="purchase",
        email="ada@example.com",
        contact_id=7,
        tier="vip",
        session_id="cs_test_1",
        refund="disputed",
        coupon_code="VIP-AAAA-BBBB-CCCC",
        coupon="created",
        coupon_email_sent_at="2024-05-01T12:00:00+00:00",
    )


def test_a_contact_row_shows_the_invite_that_stands(settings) -> None:
    def invite(tier: str, code: str, *, revoked: bool, entry: int) -> ContactFacts:
        return ContactFacts(
            contact_id=3,
            tier=tier,
            email="kj@example.com",
            invite_id=entry,
            invite_state=EntryState.DONE,
            invite_code=code,
            invite_at="2024-05-01T12:00:00+00:00",
            revoked=revoked,
            mail_ref="11:3" if tier == "vip" else None,
            mail_sent_at="2024-05-01T12:00:01+00:00" if tier == "vip" else None,
            lead_state=EntryState.DONE,
            lead_ref="lead-1",
            lead_observed=False,
            lead_contact_id=3,
        )

    upgraded = [invite("basic", "OLDbasic", revoked=True, entry=1)]
    upgraded.append(invite("vip", "NEWvip", revoked=False, entry=2))
    row = contact_row(upgraded, settings)
    assert (row.tier, row.invite_code, row.invite_state) == ("vip", "NEWvip", "unknown")
    assert (row.invite_email_sent_at, row.lead, row.lead_id) == (
        "2024-05-01T12:00:01+00:00",
        "created",
        "lead-1",
    )
    row = contact_row(upgraded[:1], settings)
    assert (row.tier, row.invite_code, row.invite_state) == ("basic", "OLDbasic", "revoked")


# -- 100k rows ---------------------------------------------------------------------------------


def test_100k_purchase_rows_stream_through_in_bounded_memory(offline_campaign: Path) -> None:
    seed_purchases(offline_campaign / ".syncctl-state", 100_000)
    out = offline_campaign / "purchases.csv"
    # What every command loads (the root callback's rendering, hence the engine and
    # the Stripe SDK) is loaded before measuring: the export's own growth is the point.
    importlib.import_module("syncctl.commands.render")
    tracemalloc.start()
    try:
        started = time.monotonic()
        result = run_in(offline_campaign, "export", "--output", str(out))
        seconds = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert peak < MEMORY_BOUND, f"peak {peak / 2**20:.1f} MiB over {seconds:.1f} s"
    assert "exported 100000 purchase(s) and 0 contact(s)" in result.stderr
    with out.open(newline="") as handle:
        header, first = next(csv.reader(handle)), next(csv.reader(handle))
        row = dict(zip(header, first, strict=True))
        lines = sum(chunk.count("\n") for chunk in iter(lambda: handle.read(1 << 20), ""))
    assert row["session_id"] == "cs_test_0000000000" and row["refund"] == "refunded"
    assert row["contact_id"] == "1" and row["coupon_code"] == "VIP-0000-ABCD-EFGH"
    assert row["coupon_email_sent_at"] == "2024-05-01T12:00:00+00:00"
    assert lines == 100_000 - 1
    assert out.stat().st_size > 10 * 1024 * 1024  # more than the bound: it was not held
