"""The order flow's services: order, inventory, payment and the orchestrator. Each is its own
process with its own database; the saga mode (orchestration or choreography) is configuration.
"""

SERVICE_DATABASES = {
    "order": "orders",
    "inventory": "inventory",
    "payment": "payments",
    "orchestrator": "orchestrator",
}
"""Each service's database (before namespacing); its consumer group is its name."""
