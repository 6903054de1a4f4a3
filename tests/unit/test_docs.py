"""Docs that are generated must match what generates them."""

from __future__ import annotations

import re
from pathlib import Path

from examples.shop.saga import ORDER_SAGA

from sagakit.saga.diagram import mermaid

ROOT = Path(__file__).resolve().parents[2]


def test_orchestration_doc_shows_the_current_saga_definition() -> None:
    doc = (ROOT / "docs" / "orchestration.md").read_text()
    block = re.search(
        r"<!-- diagram:start -->\n```mermaid\n(.*?)```\n<!-- diagram:end -->", doc, re.S
    )
    assert block is not None
    assert block.group(1) == mermaid(ORDER_SAGA, started_by="order.created")


def test_diagram_has_every_command_and_reply() -> None:
    chart = mermaid(ORDER_SAGA)
    for name in (*ORDER_SAGA.command_types, *ORDER_SAGA.reply_types):
        assert name in chart


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_saga_example_is_the_shipped_definition() -> None:
    """The README's example runs, and defines exactly the saga the project ships."""
    readme = (ROOT / "README.md").read_text()
    example = next(b for b in _python_blocks(readme) if "SagaDefinition(" in b)
    scope: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["ORDER_SAGA"] == ORDER_SAGA


def test_readme_commands_exist() -> None:
    """Every `sagakit ...` command line the README shows is one the CLI accepts, with its
    arguments (placeholders such as ``<order_id>`` stand for any value)."""
    from sagakit.cli import build_parser

    readme = (ROOT / "README.md").read_text()
    lines = re.findall(r"\.venv/bin/sagakit ([^#\n`]*)", readme)
    assert lines
    parser = build_parser()
    for line in set(lines):
        args = [re.sub(r"^<.*>$", "x", word) for word in line.split()]
        parser.parse_args(args)  # exits (fails the test) on an unknown command
