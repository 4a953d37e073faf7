"""The `liteshift` command: parse, call the API (or start a process), render."""

from api.cli.commands import main

__all__ = ["main"]
