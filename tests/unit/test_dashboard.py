"""The Grafana dashboard in docs/ queries only metrics that /metrics serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sagakit import metrics, orchestration
from sagakit.runtime.host import GAUGES

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def served() -> set[str]:
    names = {
        m.name
        for m in (
            metrics.HANDLER_SECONDS,
            metrics.SAGAS_STARTED,
            metrics.SAGAS_ENDED,
            metrics.SAGA_SECONDS,
            metrics.SAGA_COMMANDS,
            metrics.STEP_SECONDS,
        )
        for m in m.describe()
    }
    names |= {n for n in metrics.COUNTERS}
    return names | set(GAUGES) | set(orchestration.GAUGES) | {"sagakit_consumer_lag"}


def test_the_dashboard_queries_served_metrics() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana" / "sagakit.json").read_text())
    queried = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for name in re.findall(r"sagakit_[a-z_]+", target["expr"]):
                for suffix in SUFFIXES:
                    name = name.removesuffix(suffix)
                queried.add(name)
    unknown = queried - served()
    assert not unknown, f"the dashboard queries {sorted(unknown)}, which /metrics lacks"
    assert len(queried) >= 12
