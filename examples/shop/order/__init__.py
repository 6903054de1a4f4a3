"""The order service: takes orders over HTTP and starts their sagas."""

from examples.shop import SERVICE_DATABASES
from examples.shop.order.api import routes
from examples.shop.order.handlers import router
from examples.shop.order.stuck import watch
from examples.shop.saga import ORDER_SAGA
from sagakit import Service

service = Service(
    "order",
    database=SERVICE_DATABASES["order"],
    migrations="examples.shop.order",
    sagas=[ORDER_SAGA],
    publishes=[ORDER_SAGA.starts_on],
    routes=routes,
    router=router,
    background=[watch],
)
