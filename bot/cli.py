"""`arbops` CLI, generated from the command table in core.commands.

Works with no Telegram and no Redis (R-U2). Commands that act on a running
engine go over the local control channel; `status`, `kill` and `--help` stay
light (no aiogram, no ccxt; design.md). Exit codes: 0 success, 1 failed,
2 bad input or a refusal by a safety rule.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from core.commands import BY_NAME, COMMANDS, Args, Command

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 too, but without a traceback
        self.print_usage(sys.stderr)
        print(f"arbops: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_REFUSED)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="arbops", description="Upbit <-> Binance premium-arbitrage operator")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd in COMMANDS:
        if not cmd.cli:
            continue
        suffix = "" if cmd.available else f" [not available yet: {cmd.pending_issue}]"
        p = sub.add_parser(cmd.name, help=cmd.help + suffix, description=cmd.help + suffix)
        _add_model_args(p, cmd.args)
    return parser


def _add_model_args(p: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        flag = (field.alias or name).replace("_", "-")
        help_text = field.description or ""
        annotation = field.annotation
        choices = _literal_choices(annotation)
        if extra.get("positional"):
            p.add_argument(name, choices=choices, help=help_text)
        elif annotation is bool:
            p.add_argument(f"--{flag}", dest=name, action="store_true", help=help_text)
        else:
            default = field.default
            p.add_argument(f"--{flag}", dest=name, default=None, metavar=flag.upper(),
                           help=f"{help_text} (default: {default})" if default is not None
                           else help_text)


def _literal_choices(annotation: Any) -> list[str] | None:
    if get_origin(annotation) is not None and str(get_origin(annotation)).endswith("Literal"):
        return [str(a) for a in get_args(annotation)]
    return None


def parse_args(cmd: Command, ns: argparse.Namespace) -> Args:
    raw = {k: v for k, v in vars(ns).items() if k != "command" and v is not None and v is not False}
    data = {}
    for name, value in raw.items():
        field = cmd.args.model_fields.get(name)
        if field is None:
            continue
        data[field.alias or name] = value
    try:
        return cmd.args.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = "--" + "-".join(str(x) for x in err["loc"]).replace("_", "-") if err["loc"] else ""
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}" if where else msg)
        raise CliError("bad arguments:\n  " + "\n  ".join(problems)) from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not ns.command:
        parser.print_help()
        return EXIT_REFUSED
    cmd = BY_NAME[ns.command]
    try:
        if not cmd.available:
            raise CliError(f"`arbops {cmd.name}` is not available yet: it lands with "
                           f"{cmd.pending_issue}", EXIT_FAILED)
        args = parse_args(cmd, ns)
        from core.settings import SettingsError, load_settings

        try:
            settings = load_settings()
        except SettingsError as exc:
            raise CliError(str(exc)) from None
        code: int = find_handler(cmd.name)(settings, args)
        return code
    except CliError as exc:
        print(f"arbops {ns.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_FAILED


# Handler modules, imported only when their command runs (keeps `status` light).
HANDLER_MODULES = ("bot.cli_commands", "bot.cli_safety", "bot.cli_monitoring", "bot.cli_venues")


def find_handler(name: str) -> Any:
    import importlib

    for module_name in HANDLER_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        handler = getattr(module, f"cmd_{name}", None)
        if handler is not None:
            return handler
    raise CliError(f"`arbops {name}` has no handler", EXIT_FAILED)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
