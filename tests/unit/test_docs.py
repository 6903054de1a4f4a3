"""Docs that are generated must match what generates them."""

from __future__ import annotations

import re
from pathlib import Path

from examples.shop.saga import PAY_FIRST, RESERVE_FIRST

from sagakit.saga.diagram import mermaid

ROOT = Path(__file__).resolve().parents[2]


def test_orchestration_doc_shows_the_current_saga_definitions() -> None:
    doc = (ROOT / "docs" / "orchestration.md").read_text()
    for marker, definition in (("diagram", RESERVE_FIRST), ("diagram pay-first", PAY_FIRST)):
        block = re.search(
            rf"<!-- {marker}:start -->\n```mermaid\n(.*?)```\n<!-- {marker}:end -->", doc, re.S
        )
        assert block is not None, marker
        assert block.group(1) == mermaid(definition, started_by=definition.starts_on)


def test_diagram_has_every_command_and_reply() -> None:
    for definition in (RESERVE_FIRST, PAY_FIRST):
        chart = mermaid(definition)
        for name in (*definition.command_types, *definition.reply_types):
            assert name in chart


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_examples_compile_and_import_public_names() -> None:
    """The README's snippets are Python (``...`` stands for the elided), and every name they
    import from sagakit is public."""
    import sagakit

    readme = (ROOT / "README.md").read_text()
    blocks = _python_blocks(readme)
    assert blocks
    for block in blocks:
        compile(block, "README.md", "exec")
        for names in re.findall(r"^from sagakit import (.+)$", block, re.M):
            for name in names.split(","):
                assert name.strip() in sagakit.__all__, name


def test_readme_commands_exist() -> None:
    """Every `sagakit ...` and `python -m examples.shop ...` command line the README shows is
    one the CLI accepts, with its arguments (placeholders such as ``<saga_id>`` stand for any
    value)."""
    from examples.shop.__main__ import build_parser as shop_parser

    from sagakit.cli import build_parser

    readme = (ROOT / "README.md").read_text()
    for pattern, parser in (
        (r"\.venv/bin/sagakit ([^#\n`]*)", build_parser()),
        (r"\.venv/bin/python -m examples\.shop ([^#\n`]*)", shop_parser()),
    ):
        lines = re.findall(pattern, readme)
        assert lines
        for line in set(lines):
            args = [re.sub(r"^<.*>$", "x", word) for word in line.split()]
            parser.parse_args(args)  # exits (fails the test) on an unknown command
