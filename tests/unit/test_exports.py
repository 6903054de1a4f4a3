"""The public API is deliberate: adding or removing a name should be a visible decision."""

import sagakit

EXPECTED = {
    "Action",
    "Command",
    "ConcurrencyConflict",
    "ConfigError",
    "Connection",
    "ConsumerOptions",
    "ContractError",
    "ConsumerRuntime",
    "Decision",
    "Envelope",
    "MessageContext",
    "MessageError",
    "MigrationSet",
    "Mode",
    "OutboxRelay",
    "Parallel",
    "Replied",
    "RetryPolicy",
    "Router",
    "Runtime",
    "SagaDefinition",
    "SagaState",
    "SagaStatus",
    "SagakitError",
    "Service",
    "Settings",
    "Started",
    "Step",
    "StepKind",
    "TimedOut",
    "TransientError",
    "__version__",
    "check_system",
    "decide",
    "new_message",
    "publish",
    "start",
    "start_saga",
    "topic_name",
}


def test_public_names() -> None:
    assert set(sagakit.__all__) == EXPECTED
    assert all(hasattr(sagakit, name) for name in sagakit.__all__)


def test_saga_core_imports_no_io() -> None:
    """The engine is pure: importing it pulls in no database, broker or HTTP library."""
    import subprocess
    import sys

    code = (
        "import sys, sagakit.saga.engine, sagakit.saga.diagram; "
        "bad = [m for m in ('asyncpg', 'aiokafka', 'fastapi', 'httpx') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _public_modules() -> set[str]:
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    block = doc.split("<!-- public-modules:start -->")[1].split("<!-- public-modules:end -->")[0]
    return set(re.findall(r"`([a-z_.]+)`", block))


def test_examples_import_only_public_modules() -> None:
    """The examples are built like a user's code: every sagakit module they import is one
    docs/api.md lists as public."""
    import ast
    from pathlib import Path

    public = _public_modules()
    assert "sagakit" in public
    root = Path(__file__).resolve().parents[2] / "examples"
    files = sorted(root.rglob("*.py"))
    assert files
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "sagakit":
                    assert name in public, f"{path.relative_to(root)} imports {name}"


def test_framework_knows_nothing_of_the_examples() -> None:
    """Nothing under src/sagakit names the shop's or the trip's messages or modules."""
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src" / "sagakit"
    bad = re.compile(r"examples\.|\border\.created\b|\binventory\.|\bpayment\.|RESERVE_FIRST")
    for path in src.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert not bad.search(line), f"{path.relative_to(src)}:{n}: {line.strip()}"
