"""docs/tutorial.md stays true: each Python or SQL block is an excerpt of a file in
examples/trip (named on its first line) or is run here; its commands are ones the CLI
accepts; its HTTP calls name endpoints the agency serves, with bodies that fit the saga's
data; its diagram is what ``sagakit diagram`` prints."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from examples.trip.saga import TripRequest
from examples.trip.trips import service as agency

from sagakit.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = (ROOT / "docs" / "tutorial.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```$", TUTORIAL, re.S | re.M)
CODE = [(lang, body) for lang, body in BLOCKS if lang in ("python", "sql")]
SOURCE = re.compile(r"^(?:#|--) (examples/trip/\S+)\n")


def _ids() -> list[str]:
    out = []
    for n, (lang, body) in enumerate(CODE):
        found = SOURCE.match(body)
        out.append(f"{n}-{found[1] if found else f'{lang}-run'}")
    return out


def test_the_tutorial_has_code() -> None:
    excerpts = [body for _, body in CODE if SOURCE.match(body)]
    assert len(excerpts) >= 5
    assert len(CODE) - len(excerpts) >= 2


@pytest.mark.parametrize(("lang", "body"), CODE, ids=_ids())
def test_code_block_is_an_excerpt_or_runs(lang: str, body: str) -> None:
    found = SOURCE.match(body)
    if found:
        source = (ROOT / found[1]).read_text()
        assert body[found.end() :] in source, f"not an excerpt of {found[1]}"
        return
    assert lang == "python", "an SQL block must name the file it comes from"
    exec(compile(body, "docs/tutorial.md", "exec"), {})


def _commands() -> list[list[str]]:
    """Each command line of the shell blocks, split as the shell would."""
    shell = "\n".join(body for lang, body in BLOCKS if lang == "bash")
    lines = shell.replace("\\\n", " ").splitlines()
    return [argv for argv in map(shlex.split, lines) if argv]


def test_sagakit_commands_exist() -> None:
    inline = re.findall(r"`(sagakit [^`]+)`", TUTORIAL)
    lines = [argv[1:] for argv in _commands() if argv[0] == ".venv/bin/sagakit"]
    assert len(lines) >= 3
    parser = build_parser()
    for args in [*lines, *(line.split()[1:] for line in inline)]:
        # placeholders such as <saga_id> stand for any value; an unknown command exits
        parser.parse_args([re.sub(r"^<.*>$", "x", word) for word in args])


def test_http_calls_name_served_endpoints_with_valid_bodies() -> None:
    paths = agency.app().openapi()["paths"]
    calls = [argv for argv in _commands() if argv[0] == "curl"]
    assert calls
    for argv in calls:
        url = next(a for a in argv if a.startswith("localhost:8004"))
        path = url.removeprefix("localhost:8004")
        if "-XPOST" in argv:
            assert "post" in paths[path], path
            TripRequest.model_validate(json.loads(argv[argv.index("-d") + 1]))
    inline = re.findall(r"`(?:POST|GET) (/[^`]+)`", TUTORIAL)
    for path in inline:
        assert path in paths or re.sub(r"<[^>]+>|\{[^}]+\}", "{saga_id}", path) in paths, path


def test_the_diagram_is_what_sagakit_diagram_prints(capsys: pytest.CaptureFixture[str]) -> None:
    block = re.search(
        r"<!-- diagram:start -->\n```mermaid\n(.*?)```\n<!-- diagram:end -->", TUTORIAL, re.S
    )
    assert block is not None
    assert main(["diagram", "examples.trip.saga:TRIP"]) == 0
    assert block[1] == capsys.readouterr().out
