"""The public API is deliberate: adding or removing a name should be a visible decision."""

import sagakit

EXPECTED = {
    "Action",
    "Command",
    "ConcurrencyConflict",
    "ConsumerOptions",
    "ConsumerRuntime",
    "Decision",
    "Envelope",
    "MessageContext",
    "MessageError",
    "OutboxRelay",
    "Replied",
    "RetryPolicy",
    "Router",
    "SagaDefinition",
    "SagaState",
    "SagaStatus",
    "SagakitError",
    "Settings",
    "Started",
    "Step",
    "StepKind",
    "TimedOut",
    "TransientError",
    "__version__",
    "decide",
    "new_message",
    "start",
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
