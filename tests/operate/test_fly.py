"""ops/fly/fly.toml and the README's Fly.io walk-through: valid TOML that keeps the promises
(volume, `liteshift serve`, token only as a secret, no public service), and every
`liteshift …` command they name parses with the CLI's own parser."""

from __future__ import annotations

import re
import shlex
import tomllib

import pytest
from faults.support import REPO

from api.cli.commands import build_parser

FLY = REPO / "ops" / "fly" / "fly.toml"
COMMAND = re.compile(r"\bliteshift\s+[a-z][^#)&|;`\n]*")  # up to a comment, `)`, `&`, …


def fly_section() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Moving an app on Fly.io")
    return readme[start:readme.index("\n## ", start + 1)]


def commands(text: str) -> list[str]:
    """The `liteshift …` commands in the text's shell blocks, comments included."""
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return [m.group(0).strip() for block in blocks for m in COMMAND.finditer(block)]


def toml_commands() -> list[str]:
    """fly.toml's process commands, and the commands its comments quote."""
    text = FLY.read_text()
    return [*tomllib.loads(text)["processes"].values(),
            *re.findall(r"`(liteshift [^`]*)`", text)]


def test_fly_toml_is_valid_and_private():
    config = tomllib.loads(FLY.read_text())
    assert config["app"] and config["primary_region"]
    # no public service: reachable over the private network (and `fly proxy`) only
    assert "http_service" not in config and "services" not in config
    assert config["mounts"]["destination"] == config["env"]["LITESHIFT_DATA_DIR"] == "/data"
    assert config["mounts"]["source"]
    assert not any("TOKEN" in name for name in config["env"])  # a secret, not in the file
    serve = shlex.split(config["processes"]["app"])
    assert serve[:2] == ["liteshift", "serve"]
    args = build_parser().parse_args(serve[1:])
    assert args.port == config["checks"]["healthz"]["port"]
    assert args.host == "::"  # the private network is IPv6
    assert config["checks"]["healthz"]["path"] == "/healthz"


def test_every_liteshift_command_of_the_fly_section_and_fly_toml_exists():
    named = commands(fly_section()) + toml_commands()
    assert {"serve", "submit", "watch", "cutover", "download"} <= {c.split()[1] for c in named}
    parser = build_parser()
    for command in named:
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit:
            pytest.fail(f"the CLI does not accept `{command}`")


def test_the_walk_through_covers_the_move():
    section = fly_section()
    for step in ("fly volumes create", "fly deploy", "--config ops/fly/fly.toml", "fly proxy",
                 "/download", "sha256", "DATABASE_PATH", "LITESHIFT_API_TOKEN"):
        assert step in section, step
