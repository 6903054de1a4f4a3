"""The order flow's services: order, inventory, payment and the orchestrator. Each is its own
process with its own database; the saga mode (orchestration or choreography) is configuration.
"""
