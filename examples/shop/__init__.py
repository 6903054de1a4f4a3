"""The order shop of the seeds, built on sagakit's public API: order, inventory and payment
services, each with its own database, and an orchestrator; the saga mode (orchestration or
choreography) is configuration. ``python -m examples.shop demo|bench|up|check``."""

SERVICE_DATABASES = {
    "order": "orders",
    "inventory": "inventory",
    "payment": "payments",
    "orchestrator": "orchestrator",
}
"""Each service's database (before namespacing); its consumer group is its name."""
