"""Docs that are generated must match what generates them."""

from __future__ import annotations

import re
from pathlib import Path

from sagakit.flows.order_saga import ORDER_SAGA
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
