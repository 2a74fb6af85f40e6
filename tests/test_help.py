"""The help an agent or a person reads: what each command takes, what it prints, how it can end."""

from __future__ import annotations

import argparse

import pytest

from prime_billing.cli import build_parser


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_top_level_help_names_the_sandbox_configuration_and_exit_codes() -> None:
    text = build_parser().format_help()
    for needle in ("--sandbox", "PRIME_API_KEY", "prime login", "PRIME_TEAM_ID", "Exit codes: 0 ok", "3 a check"):
        assert needle in " ".join(text.split()), needle


@pytest.mark.parametrize(
    ("command", "exit_3"),
    [("usage", False), ("spend", False), ("reconcile", True), ("wallet", True), ("runway", True), ("pace", True)],
)
def test_exit_code_3_is_told_only_where_a_command_can_return_it(command: str, exit_3: bool) -> None:
    text = " ".join(subparsers()[command].format_help().split())
    assert ("3 a check did not pass" in text) is exit_3
    assert "exit codes: 0 ok, 1 API or network failure, 2 bad invocation or configuration" in text


def test_usage_takes_several_ids_and_lists_the_characters_an_id_may_hold() -> None:
    text = " ".join(subparsers()["usage"].format_help().split())
    assert "RUN_ID [RUN_ID ...]" in text and "Give several to fetch them at once" in text
    assert "A-Z a-z, the digits 0-9 and _ - . :" in text


def test_json_help_describes_each_commands_own_output() -> None:
    helps = {
        name: next(a.help for a in p._actions if "--json" in a.option_strings)
        for name, p in subparsers().items()
        if name in ("usage", "wallet", "reconcile", "spend", "runway", "pace")
    }
    assert "unchanged" in helps["wallet"] and "array" in helps["usage"]
    assert "report" in helps["reconcile"] and "report" in helps["spend"] and "unchanged" not in helps["spend"]
    assert "every row" in helps["spend"] and "every row" not in helps["runway"]  # runway has no rows to give
    assert "report" in helps["pace"] and "every row" not in helps["pace"]  # nor has pace


def test_the_top_level_help_names_every_command_that_can_exit_3() -> None:
    text = " ".join(build_parser().format_help().split())
    assert "3 a check did not pass (wallet --min-balance, reconcile, runway, pace)" in text


def test_csv_help_says_what_the_csv_holds() -> None:
    spend = " ".join(next(a.help for a in subparsers()["spend"]._actions if "--csv" in a.option_strings).split())
    assert "with --by: one line per period and resource type, period,start,resource_type,rows,total_usd" in spend
    reconcile = next(a.help for a in subparsers()["reconcile"]._actions if "--csv" in a.option_strings)
    assert reconcile.startswith("also write the rows as CSV")
    assert not any("--csv" in a.option_strings for a in subparsers()["runway"]._actions)


def test_every_option_says_what_it_does_and_its_default() -> None:
    for name, parser in subparsers().items():
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings[0]} has no help"
            takes_value = action.nargs != 0 and not isinstance(action, argparse._StoreConstAction)
            if takes_value and action.default not in (None, [], False):
                assert "default" in action.help, f"{name} {action.option_strings[0]} hides its default"
