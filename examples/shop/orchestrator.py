"""The orchestrator service: holds the order sagas' state. Orchestrated, it drives them over
Kafka; choreographed, it tracks them (their timeline, their timers, ``GET /sagas``) while
the participants drive them. Everything it does comes with the framework; the shop only
names the definitions."""

from examples.shop import SERVICE_DATABASES
from examples.shop.saga import FLOWS
from sagakit import Service

service = Service(
    "orchestrator",
    database=SERVICE_DATABASES["orchestrator"],
    orchestrates=FLOWS,
)
