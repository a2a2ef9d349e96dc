"""`syncctl schedule systemd|cron`: units and crontab lines, printed or installed."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from syncctl.commands import schedule as sched
from syncctl.errors import UsageError
from tests.ops.conftest import Run, one_error_line, run_in


def units_of(stdout: str) -> dict[str, str]:
    """`# /path/name` headers split the printed units."""
    units: dict[str, str] = {}
    name = None
    for line in stdout.splitlines():
        if line.startswith("# /"):
            name = Path(line[2:]).name
            units[name] = ""
        elif name:
            units[name] += line + "\n"
    return units


def test_systemd_units(run: Run, campaign: Path, behind_sudo: str) -> None:
    result = run("schedule", "systemd")
    assert result.exit_code == 0, result.output
    units = units_of(result.stdout)
    assert set(units) == {
        "syncctl.service",
        "syncctl.timer",
        "syncctl-audit.service",
        "syncctl-audit.timer",
        "syncctl-alert@.service",
    }
    service = units["syncctl.service"]
    assert "Type=oneshot" in service
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    executable = exec_start.removeprefix("ExecStart=").split()[0]
    assert os.path.isabs(executable)
    assert f"--config {campaign.resolve() / 'syncctl.toml'}" in exec_start
    assert f"--env-file {campaign.resolve() / '.env'}" in exec_start
    assert exec_start.endswith(" reconcile")
    assert "SuccessExitStatus=3" in service
    assert f"WorkingDirectory={campaign.resolve()}" in service
    assert f"User={behind_sudo}" in service
    timer = units["syncctl.timer"]
    assert "OnCalendar=*:0/15" in timer
    assert "Persistent=true" in timer and "RandomizedDelaySec=60" in timer
    assert "WantedBy=timers.target" in timer
    audit = units["syncctl-audit.service"]
    assert "Type=oneshot" in audit and "reconcile --full --wait" in audit
    audit_timer = units["syncctl-audit.timer"]
    assert "OnCalendar=*-*-* 03:30:00" in audit_timer and "Persistent=true" in audit_timer
    assert "flock" not in result.stdout


def test_systemd_options_and_json_logs(run: Run, behind_sudo: str) -> None:
    result = run(
        "schedule",
        "systemd",
        "--every",
        "120",
        "--audit-at",
        "4:05",
        "--delay",
        "5",
        globals_=("--log-format", "json"),
    )
    units = units_of(result.stdout)
    assert "OnCalendar=0/2:00" in units["syncctl.timer"]
    assert "RandomizedDelaySec=5" in units["syncctl.timer"]
    assert "OnCalendar=*-*-* 04:05:00" in units["syncctl-audit.timer"]
    assert "--log-format json" in units["syncctl.service"]


def test_systemd_install_user_units(run: Run, tmp_path: Path, monkeypatch, as_operator) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    result = run("schedule", "systemd", "--user", "--install")
    assert result.exit_code == 0, result.output
    directory = tmp_path / "xdg" / "systemd" / "user"
    assert sorted(p.name for p in directory.iterdir()) == [
        "syncctl-alert@.service",
        "syncctl-audit.service",
        "syncctl-audit.timer",
        "syncctl.service",
        "syncctl.timer",
    ]
    assert "User=" not in (directory / "syncctl.service").read_text()
    assert "systemctl --user enable --now syncctl.timer syncctl-audit.timer" in result.stderr
    assert result.stdout == ""


def test_cron_lines(run: Run, campaign: Path) -> None:
    result = run("schedule", "cron", "--every", "10", "--audit-at", "02:45")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    frequent, audit = lines
    assert frequent.startswith("*/10 * * * * cd ")
    assert audit.startswith("45 2 * * * cd ")
    assert " -q " in frequent and frequent.endswith(" reconcile")
    assert audit.endswith(" reconcile --full --wait")
    assert str(campaign.resolve() / "syncctl.toml") in frequent
    assert "flock" not in frequent + audit


def test_cron_install_replaces_its_own_block(run: Run, tmp_path: Path, monkeypatch) -> None:
    table = tmp_path / "crontab.txt"
    table.write_text("MAILTO=ops@example.com\n0 1 * * * /usr/bin/backup\n")
    fake = tmp_path / "bin" / "crontab"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "-l" ]; then cat {table}; else cat > {table}; fi\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert run("schedule", "cron", "--install").exit_code == 0
    assert run("schedule", "cron", "--install", "--every", "5").exit_code == 0
    text = table.read_text()
    assert text.startswith("MAILTO=ops@example.com\n0 1 * * * /usr/bin/backup\n")
    assert text.count(sched.BEGIN) == 1 and text.count(sched.END) == 1
    assert "*/5 * * * *" in text and "*/15 * * * *" not in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("cron", "--user"), "--user applies to systemd"),
        (("systemd", "--every", "90"), "--every 90"),
        (("systemd", "--every", "7"), "divide the hour"),
        (("cron", "--audit-at", "25:00"), "--audit-at"),
        (("cron", "--allow-root"), "--allow-root applies to systemd"),
        (("systemd", "--user", "--user-name", "x"), "--user-name applies to system units"),
        (("cron", "--mode", "watch"), "--mode watch applies to systemd units only"),
        (("systemd", "--mode", "watch", "--every", "5"), "--every applies to --mode timer"),
        (("systemd", "--mode", "watch", "--audit-at", "04:00"), "--audit-at applies to --mode"),
    ],
    ids=[
        "user-with-cron",
        "every-90",
        "every-7",
        "bad-time",
        "cron-root",
        "user-name-user",
        "watch-with-cron",
        "watch-every",
        "watch-audit-at",
    ],
)
def test_bad_options_are_one_line_exit_2(run: Run, args, expected) -> None:
    result = run("schedule", *args)
    assert result.exit_code == 2
    assert expected in one_error_line(result)


def test_quoting() -> None:
    spec = sched.ScheduleSpec(
        executable=("/opt/sync ctl/bin/syncctl",),
        config=Path("/etc/sync%ctl/syncctl.toml"),
        env_file=None,
    )
    service = sched.systemd_units(spec, user_units=False, run_as="alice")[0].text
    assert 'ExecStart="/opt/sync ctl/bin/syncctl" --config /etc/sync%%ctl/syncctl.toml' in service
    assert "User=alice" in service
    cron = sched.crontab_block(spec)
    assert "'/opt/sync ctl/bin/syncctl'" in cron and "sync\\%ctl" in cron


def test_executable_is_absolute() -> None:
    exe = sched.find_executable()
    assert os.path.isabs(exe[0])


def test_units_keep_their_own_tmp_unless_syncctl_lives_in_tmp() -> None:
    installed = sched.ScheduleSpec(
        executable=("/usr/local/bin/syncctl",),
        config=Path("/etc/syncctl/syncctl.toml"),
        env_file=Path("/etc/syncctl/.env"),
        state_dir=Path("/var/lib/syncctl"),
    )
    service = sched.systemd_units(installed, user_units=False)[0].text
    assert "PrivateTmp=yes" in service
    trial = dataclasses.replace(installed, state_dir=Path("/tmp/campaign/state"))
    assert "PrivateTmp" not in sched.systemd_units(trial, user_units=False)[0].text


# -- who the units run as -------------------------------------------------------------------


def services_of(stdout: str) -> list[str]:
    units = units_of(stdout)
    return [units["syncctl.service"], units["syncctl-audit.service"]]


def test_a_root_shell_gets_no_units_that_would_run_as_root(run: Run, as_root) -> None:
    result = run("schedule", "systemd")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "would run as root" in line
    assert "--user-name NAME" in line and "--allow-root" in line
    assert result.stdout == ""


def test_user_name_chooses_the_account_the_units_run_as(run: Run, as_root, other_account) -> None:
    result = run("schedule", "systemd", "--user-name", other_account.pw_name)
    assert result.exit_code == 0, result.output
    assert all(f"User={other_account.pw_name}\n" in unit for unit in services_of(result.stdout))
    assert f"the units run as {other_account.pw_name}" in result.stderr


def test_allow_root_runs_the_units_as_root_and_says_so(run: Run, as_root) -> None:
    result = run("schedule", "systemd", "--allow-root")
    assert result.exit_code == 0, result.output
    assert all("User=root\n" in unit for unit in services_of(result.stdout))
    assert "warning: the units run as root" in result.stderr


def test_user_name_root_needs_allow_root_too(run: Run, behind_sudo) -> None:
    result = run("schedule", "systemd", "--user-name", "root")
    assert result.exit_code == 2
    assert "--user-name root names root" in one_error_line(result)


def test_an_unknown_user_name_is_refused(run: Run, behind_sudo) -> None:
    result = run("schedule", "systemd", "--user-name", "no-such-syncctl-account")
    assert result.exit_code == 2
    assert "no-such-syncctl-account: no such account" in one_error_line(result)


def test_user_units_from_a_root_shell_are_refused(
    run: Run, as_root, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    result = run("schedule", "systemd", "--user", "--install")
    assert result.exit_code == 2
    assert "user units installed as root" in one_error_line(result)
    assert not (tmp_path / "xdg" / "systemd").exists()


# -- paths systemd reads as written ---------------------------------------------------------


ODD = Path("/srv/odd dir/50%")


def test_a_path_with_a_space_and_a_percent_is_escaped_per_systemd_syntax() -> None:
    """systemd.syntax(7): specifiers everywhere (% is %%); WorkingDirectory= takes the
    path as written (quotes would be part of it); ExecStart= words are quoted."""
    spec = sched.ScheduleSpec(
        executable=("/usr/bin/syncctl",),
        config=ODD / "syncctl.toml",
        env_file=ODD / ".env",
    )
    service = sched.systemd_units(spec, user_units=False, run_as="alice")[0].text
    assert "WorkingDirectory=/srv/odd dir/50%%\n" in service
    assert '--config "/srv/odd dir/50%%/syncctl.toml"' in service
    assert '--env-file "/srv/odd dir/50%%/.env"' in service


@pytest.mark.parametrize("name", ["line\nbreak", "ends in a space ", "ends in a backslash\\"])
def test_a_directory_a_unit_cannot_name_is_refused(name: str) -> None:
    spec = sched.ScheduleSpec(
        executable=("/usr/bin/syncctl",), config=Path("/srv") / name / "syncctl.toml", env_file=None
    )
    with pytest.raises(UsageError, match="cannot be written into a systemd unit"):
        sched.systemd_units(spec, user_units=False, run_as="alice")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_from_a_folder_with_a_space_pass_systemd_analyze_verify(
    odd_campaign: Path, behind_sudo: str, tmp_path: Path
) -> None:
    result = run_in(odd_campaign, "schedule", "systemd")
    assert result.exit_code == 0, result.output
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    for name, text in units_of(result.stdout).items():
        (unit_dir / name).write_text(text)
    assert f"WorkingDirectory={odd_campaign.resolve()}".replace("%", "%%") in result.stdout
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(map(str, unit_dir.iterdir()))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stderr


# -- --mode watch and the OnFailure= hook (issue 13, part 4) ------------------------------------


def test_every_timer_service_alerts_on_failure(run: Run, behind_sudo: str) -> None:
    units = units_of(run("schedule", "systemd").stdout)
    for name in ("syncctl.service", "syncctl-audit.service"):
        unit = units[name]
        head = unit.split("[Service]")[0]
        assert "OnFailure=syncctl-alert@%n.service\n" in head, name
    assert "SuccessExitStatus=3\n" in units["syncctl.service"]  # a short overlap stays routine
    alert = units["syncctl-alert@.service"]
    exec_start = next(line for line in alert.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith(" alert --unit %i")
    assert "--config " in exec_start and "Type=oneshot" in alert
    assert f"User={behind_sudo}\n" in alert
    assert "NoNewPrivileges=yes" not in alert  # `mail` may need Postfix's setgid postdrop
    assert "\nOnFailure=" not in alert  # an alert that fails does not alert about itself


def test_watch_mode_is_one_restarting_service_and_the_alert_template(
    run: Run, campaign: Path, behind_sudo: str
) -> None:
    result = run("schedule", "systemd", "--mode", "watch")
    assert result.exit_code == 0, result.output
    units = units_of(result.stdout)
    assert set(units) == {"syncctl-watch.service", "syncctl-alert@.service"}
    watch = units["syncctl-watch.service"]
    exec_start = next(line for line in watch.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith(" watch") and os.path.isabs(exec_start.split()[0][10:])
    assert f"--config {campaign.resolve() / 'syncctl.toml'}" in exec_start
    head, service = watch.split("[Service]")
    assert "OnFailure=syncctl-alert@%n.service\n" in head
    assert "StartLimitIntervalSec=1h\n" in head and "StartLimitBurst=5\n" in head
    for line in (
        "Type=simple",
        "Restart=on-failure",
        "RestartSec=30",
        "RestartPreventExitStatus=2",
        f"User={behind_sudo}",
        "NoNewPrivileges=yes",
        f"WorkingDirectory={campaign.resolve()}",
    ):
        assert f"\n{line}\n" in service, line
    assert "Type=oneshot" not in watch and "SuccessExitStatus" not in watch
    assert watch.rstrip().endswith("[Install]\nWantedBy=multi-user.target")
    assert "install with: syncctl schedule systemd --mode watch --install" in result.stderr


def test_watch_mode_user_units_install_and_say_how_to_start(
    run: Run, tmp_path: Path, monkeypatch, as_operator
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    result = run("schedule", "systemd", "--user", "--mode", "watch", "--install")
    assert result.exit_code == 0, result.output
    directory = tmp_path / "xdg" / "systemd" / "user"
    assert sorted(p.name for p in directory.iterdir()) == [
        "syncctl-alert@.service",
        "syncctl-watch.service",
    ]
    watch = (directory / "syncctl-watch.service").read_text()
    assert "User=" not in watch and "WantedBy=default.target" in watch
    assert "systemctl --user enable --now syncctl-watch.service" in result.stderr
    assert "systemctl --user disable --now syncctl.timer syncctl-audit.timer" in result.stderr


def test_watch_mode_never_runs_as_root_either(run: Run, as_root) -> None:
    result = run("schedule", "systemd", "--mode", "watch")
    assert result.exit_code == 2
    assert "would run as root" in one_error_line(result)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("mode", ["timer", "watch"])
def test_both_modes_pass_systemd_analyze_verify_without_a_warning(
    odd_campaign: Path, behind_sudo: str, tmp_path: Path, mode: str
) -> None:
    result = run_in(odd_campaign, "schedule", "systemd", "--mode", mode)
    assert result.exit_code == 0, result.output
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    for name, text in units_of(result.stdout).items():
        (unit_dir / name).write_text(text)
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(map(str, unit_dir.iterdir()))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stderr
    # systemd ignores a setting it cannot parse with only a warning: there must be none.
    problems = [line for line in verify.stderr.splitlines() if "ignoring" in line.lower()]
    assert problems == [], verify.stderr


def test_the_install_hint_repeats_the_options_that_chose_who_runs_the_units(
    run: Run, as_root, other_account
) -> None:
    result = run("schedule", "systemd", "--user-name", other_account.pw_name)
    assert result.exit_code == 0, result.output
    hint = f"install with: syncctl schedule systemd --user-name {other_account.pw_name} --install"
    assert hint in result.stderr
