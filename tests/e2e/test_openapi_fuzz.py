"""Every service's HTTP API fuzzed from its own OpenAPI document with schemathesis: every
check (server errors, undocumented status codes, response schemas, rejection of invalid
data, acceptance of valid data, methods, headers), examples and coverage, random fuzzing and
the stateful phase that follows the documented links (place an order, then read it).

Against the services as processes on the real stack, with a fixed seed and a fixed number
of examples per operation, so a finding replays. Run in the orchestration mode only: the
HTTP surface of each service is the same in both modes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sagakit.fleet import Fleet
from sagakit.runtime.host import Mode

SERVICES = ("order", "inventory", "payment", "orchestrator")
SEED = 11
EXAMPLES = 25
"""Per operation and phase: about 40-60 s for the four services together on two cores."""
DEADLINE_S = 400.0
"""Only a guard against a hung run (the time it takes is no property of the services)."""


@dataclass(frozen=True)
class Outcome:
    service: str
    report: dict[str, Any]
    output: str

    @property
    def generated(self) -> int:
        return int(self.report["test_cases"]["generated"])

    @property
    def failures(self) -> int:
        return int(self.report["test_cases"]["unique_failures"])

    @property
    def errors(self) -> int:
        return len(self.report["errors"])

    def summary(self) -> str:
        phases = ", ".join(f"{k} {v['status']}" for k, v in self.report["phases"].items())
        ops = self.report["operations"]["tested"]
        return (
            f"{self.service}: {self.generated} test cases, {ops} operations,"
            f" {self.failures} failures, {self.errors} errors ({phases})"
        )


async def fuzz(service: str, url: str, workdir: Path) -> Outcome:
    """``st run`` against one service; its JSON report says what ran and what failed."""
    await asyncio.to_thread(workdir.mkdir)
    report = workdir / "report.json"
    args = [
        *("run", f"{url}/openapi.json", "--checks", "all"),
        *("--phases", "examples,coverage,fuzzing,stateful"),
        *("--seed", str(SEED), "--max-examples", str(EXAMPLES), "--workers", "1"),
        *("--generation-database", "none", "--request-timeout", "10", "--no-color"),
        *("--report", "json", "--report-json-path", str(report)),
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        *args,
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(DEADLINE_S):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    assert await asyncio.to_thread(report.exists), f"{service}: no report\n{text}"
    return Outcome(service, json.loads(await asyncio.to_thread(report.read_text)), text)


@pytest.mark.timeout(DEADLINE_S + 60)
@pytest.mark.parametrize("fleet", [Mode.ORCHESTRATION], indirect=True, ids=["orchestration"])
async def test_every_service_passes_openapi_fuzzing(fleet: Fleet, tmp_path: Path) -> None:
    outcomes = await asyncio.gather(*(fuzz(s, fleet.url(s), tmp_path / s) for s in SERVICES))
    for outcome in outcomes:
        print(outcome.summary())
    for outcome in outcomes:
        report = outcome.report
        assert report["complete"] and outcome.generated > 0, outcome.output
        assert report["operations"]["tested"] == report["operations"]["total"], outcome.output
        assert report["phases"]["stateful"]["status"] == "success", outcome.output
        assert (outcome.failures, outcome.errors) == (0, 0), outcome.output
        assert not report["warnings"]["unsupported_regex"], outcome.output
