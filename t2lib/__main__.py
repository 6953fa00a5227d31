"""`python -m t2lib <command> [options]`: the kit's single entry point (`t2lib.cli`)."""
from __future__ import annotations

import importlib
import sys

from t2lib.cli import COMMANDS


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        usage = "\n".join(f"  {name:{width}s}  {what}" for name, what in COMMANDS.items())
        print(f"usage: python -m t2lib <command> [options]   (python -m t2lib <command> --help)\n\ncommands:\n{usage}",
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    return importlib.import_module(f"t2lib.cli.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
