"""`arbops` CLI, generated from the command table in core.commands.

Works with no Telegram and no Redis (R-U2). The parser, the confirmation step of a
risk-adding command and the exit code all come from the table's row; each module
here only carries a command out and prints its result (`cmd_<name>`, and for a
command with a confirmation, an optional `preview_<name>` shown before the prompt).
`status`, `kill` and `--help` stay light (no aiogram, no ccxt; docs/architecture.md). Exit
codes are core.errors.ExitCode: 0 success, 1 failed, 2 bad input or a refusal.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from core.commands import BY_NAME, COMMANDS, Args, Command, validate_args
from core.errors import ArbopsError, BadInput, ExitCode
from core.files import PRIVATE_UMASK
from core.redaction import redact, redact_data

# Where the handlers live, imported only when their command runs (keeps `status` light).
HANDLER_MODULES = ("bot.cli.kill", "bot.cli.control", "bot.cli.runs", "bot.cli.safety", "bot.cli.venues",
                   "bot.cli.reports", "bot.cli.trades", "bot.cli.backtest")
Handler = Callable[[Any, Any], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 too, but without a traceback
        self.print_usage(sys.stderr)
        print(f"arbops: error: {message}", file=sys.stderr)
        raise SystemExit(ExitCode.REFUSED)


class _Version(argparse.Action):
    """--version without importing anything heavy (the commit is asked of git once)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kw: Any) -> None:
        from core.version import version_line

        print(version_line())
        raise SystemExit(ExitCode.OK)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="arbops", description="Upbit <-> Binance premium-arbitrage operator")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the version, commit and Python, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd in COMMANDS:
        if cmd.cli:
            p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
            _add_model_args(p, cmd.args)
    return parser


def _add_model_args(p: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        flag = (field.alias or name).replace("_", "-")
        help_text = field.description or ""
        annotation = field.annotation
        choices = _literal_choices(annotation)
        if extra.get("positional"):  # one with a default may be left out (`report run ID`)
            p.add_argument(name, choices=choices, help=help_text,
                           nargs=None if field.is_required() else "?")
        elif annotation is bool:
            p.add_argument(f"--{flag}", dest=name, action="store_true", help=help_text)
        elif _is_list(annotation):  # --data A B, or --param X --param Y: one list
            p.add_argument(f"--{flag}", dest=name, nargs="+", action="extend", default=None,
                           metavar=flag.upper(), help=help_text)
        else:
            default = field.default
            p.add_argument(f"--{flag}", dest=name, default=None, metavar=flag.upper(),
                           help=f"{help_text} (default: {default})" if default is not None
                           else help_text)


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) is list:
        return True
    return any(get_origin(a) is list for a in get_args(annotation))


def _literal_choices(annotation: Any) -> list[str] | None:
    if get_origin(annotation) is not None and str(get_origin(annotation)).endswith("Literal"):
        return [str(a) for a in get_args(annotation)]
    return None


def parse_args(cmd: Command, ns: argparse.Namespace) -> Args:
    data = {}
    for name, value in vars(ns).items():
        field = cmd.args.model_fields.get(name)
        if field is not None and value is not None and value is not False:
            data[field.alias or name] = value
    return validate_args(cmd, data, flags=True)


def find(name: str, prefix: str = "cmd_") -> Handler | None:
    """The `<prefix><name>` function of the handler modules, or None."""
    for module_name in HANDLER_MODULES:
        fn = getattr(importlib.import_module(module_name), f"{prefix}{name}", None)
        if fn is not None:
            return fn
    return None


def confirm(cmd: Command, args: Args) -> None:
    """The second step of a risk-adding command on a terminal: type the row's phrase
    (or pass it as --confirm where the row allows). Anything else changes nothing."""
    if cmd.confirm is None:
        return
    fields = args.model_dump()
    phrase = cmd.confirm.format(**fields)
    given = fields.get("confirm")
    note = f"; {cmd.confirm_note}" if cmd.confirm_note else ""
    if given is not None:
        if not cmd.confirm_by_flag:
            raise BadInput(f"no flag confirms `{cmd.name}`: type {phrase!r} on a terminal{note}")
        if given != phrase:
            raise BadInput(f"confirmation phrase does not match (expected {phrase})")
        return
    if not sys.stdin.isatty():
        how = f"pass --confirm {phrase} or " if cmd.confirm_by_flag else ""
        raise BadInput(f"`{cmd.name}` needs confirmation: {how}run it in a terminal{note}")
    impact = cmd.impact.format(**fields) or cmd.help
    typed = input(f"This will {impact}. Type {phrase} to confirm: ").strip()
    if typed != phrase:
        raise BadInput("not confirmed; nothing changed")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not ns.command:
        parser.print_help()
        return ExitCode.REFUSED
    cmd = BY_NAME[ns.command]
    # Before anything is created: the journal, its WAL, logs, KPI and incident files
    # are this user's alone (files 0600, directories 0700).
    os.umask(PRIVATE_UMASK)
    try:
        args = parse_args(cmd, ns)
        from core.config.settings import load_settings, load_settings_tolerant

        if cmd.tolerant_settings:
            settings, warnings = load_settings_tolerant()
            for warning in warnings:
                print(f"arbops {cmd.name}: warning: {warning}", file=sys.stderr)
        else:
            settings = load_settings()
        handler = find(cmd.name)
        if handler is None:
            raise ArbopsError(f"`arbops {cmd.name}` has no handler")
        preview = find(cmd.name, "preview_")
        if preview is not None:
            preview(settings, args)
        confirm(cmd, args)
        return int(handler(settings, args))
    except ArbopsError as exc:
        print(redact(f"arbops {ns.command}: {exc}"), file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return ExitCode.FAILED
    except Exception as exc:
        if os.environ.get("ARBOPS_DEBUG"):
            raise
        print(redact(f"arbops {ns.command}: internal error: {type(exc).__name__}: {exc} "
                     "(ARBOPS_DEBUG=1 shows the traceback)"), file=sys.stderr)
        return ExitCode.FAILED


def print_json(data: Any) -> None:
    print(json.dumps(redact_data(data), indent=2, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
