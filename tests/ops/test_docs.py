"""Every command and option is documented: in its --help (with an example) and in the README."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from syncctl.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
GUIDE = ROOT / "docs" / "operator-guide.md"


def _commands() -> Iterator[tuple[tuple[str, ...], typer.core.TyperCommand]]:
    root = typer.main.get_command(app)

    def walk(command, path: tuple[str, ...]):
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in sorted(subcommands.items()):
                yield from walk(sub, (*path, name))
        else:
            yield path, command

    yield from walk(root, ())


COMMANDS = dict(_commands())
#: An "Example(s):" heading, then one command a line (click must not rewrap them).
EXAMPLES = re.compile(r"Examples?:\n(    syncctl [^\n]*\n)+")
ROOT_COMMAND = typer.main.get_command(app)


def _options(command) -> list[list[str]]:
    return [
        [*p.opts, *getattr(p, "secondary_opts", [])]
        for p in command.params
        if p.param_type_name == "option" and "--help" not in p.opts
    ]


def _readme_line(path: tuple[str, ...]) -> str:
    prefix = "- `syncctl " + " ".join(path)
    lines = [line for line in README.splitlines() if line.startswith(prefix + " ")]
    lines += [line for line in README.splitlines() if line.startswith(prefix + "`")]
    assert lines, f"README's command list lacks syncctl {' '.join(path)}"
    return lines[0]


def test_every_command_is_found() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"doctor", "status", "history", "init", "schedule", "reconcile"} <= names


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p))
def test_help_explains_with_an_example_and_every_option(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert EXAMPLES.search(result.stdout), result.stdout
    for param in COMMANDS[path].params:
        if "--help" in getattr(param, "opts", ()):
            continue
        assert param.help, f"{' '.join(path)}: {param.name} has no help text"


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p))
def test_readme_lists_the_command_and_its_options(path: tuple[str, ...]) -> None:
    line = _readme_line(path)
    for names in _options(COMMANDS[path]):
        assert any(name in line for name in names), f"README: {line!r} lacks {names}"


def test_readme_lists_every_global_option() -> None:
    start = README.index("- Global options")
    block = README[start : README.index("\n\n", start)]
    for names in _options(ROOT_COMMAND):
        assert any(name in block for name in names), f"README global options lack {names}"
    assert EXAMPLES.search(CliRunner().invoke(app, ["--help"]).stdout)


def test_readme_links_the_operator_guide_and_keeps_the_setup_commands() -> None:
    assert "(docs/operator-guide.md)" in README
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/syncctl demo" in README
    )
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
        ".venv/bin/python -m pytest" in README
    )


def test_operator_guide_covers_set_up_migration_and_troubleshooting() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    headings = [h.lower() for h in re.findall(r"^#+ (.+)$", guide, flags=re.M)]
    for topic in ("mautic", "discord", "shopware", "espocrm", "stripe", "migrat", "troubleshoot"):
        assert any(topic in h for h in headings), f"guide lacks a section on {topic}"
    for needle in (
        "{promo_code}",
        "{discord_invite_link}",
        "CREATE_INSTANT_INVITE",
        "MANAGE_CHANNELS",
        "individual codes",
        "--dry-run",
        "429",
        "reissue-invite",
        "syncctl doctor",
    ):
        assert needle in guide, needle
    for alias, kind in (
        ("vip_status", "Boolean"),
        ("promo_code", "Text"),
        ("discord_invite_link_vip", "Text"),
        ("discord_invite_link_basic", "Text"),
        ("opt_in_confirmed", "Boolean"),
    ):
        assert re.search(rf"`{alias}`.*{kind}", guide), alias


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: [text](target): a Markdown link; the target up to a space or the closing parenthesis.
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves_to_a_file_inside_the_repository(doc: Path) -> None:
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor of this page
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name}: {target} is outside the repository"
        assert path.exists(), f"{doc.name}: {target} does not exist"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_send_operators_to_no_file_outside_the_repository(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert "../shared/design" not in text
    assert "api-notes.md" not in text


def test_the_contract_is_in_the_projects_own_docs_and_linked() -> None:
    assert "(docs/desired-state.md)" in README
    assert "(desired-state.md)" in GUIDE.read_text(encoding="utf-8")
    contract = (ROOT / "docs" / "desired-state.md").read_text(encoding="utf-8")
    numbered = [int(n) for n in re.findall(r"^(\d+)\. ", contract, flags=re.M)]
    assert numbered == list(range(1, 25))


#: Rules of the campaign's life (16-24) that this release does.
BUILT_LATER_RULES = {16, 17, 18, 19, 20, 21, 22, 23, 24}


def test_the_contract_marks_the_rules_not_built_yet() -> None:
    contract = (ROOT / "docs" / "desired-state.md").read_text(encoding="utf-8")
    _, _, life = contract.partition("## The campaign's life after the first sale")
    assert life, "rules 16-24 need a section of their own"
    unbuilt = [str(n) for n in sorted(set(range(16, 25)) - BUILT_LATER_RULES)]
    if len(unbuilt) > 1:
        listed = ", ".join(unbuilt[:-1]) + f" and {unbuilt[-1]}"
        assert f"**Rules {listed} are not in this release.**" in life
    elif unbuilt:
        assert f"**Rule {unbuilt[0]} is not in this release.**" in life
    for rule in BUILT_LATER_RULES:
        assert re.search(rf"^{rule}\. .*\(in this release\)", life, flags=re.M), rule


def test_docs_point_at_init_not_at_copying_the_example_config() -> None:
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        assert not re.search(r"copy\s+(it\s+from\s+)?`?config\.example\.toml", text), doc.name
    assert "syncctl init" in README
