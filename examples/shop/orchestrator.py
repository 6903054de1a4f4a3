"""The orchestrator service: holds the order sagas' state and drives them over Kafka.
Everything it does comes with the framework; the shop only names the definition."""

from examples.shop import SERVICE_DATABASES
from examples.shop.saga import ORDER_SAGA
from sagakit import Service

service = Service(
    "orchestrator",
    database=SERVICE_DATABASES["orchestrator"],
    orchestrates=[ORDER_SAGA],
)
