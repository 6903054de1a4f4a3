"""The inventory service: stock per product, reserved for orders, then sold or released."""

from examples.shop import SERVICE_DATABASES
from examples.shop.inventory.api import routes
from examples.shop.inventory.handlers import router
from examples.shop.saga import ORDER_SAGA
from sagakit import Service

service = Service(
    "inventory",
    database=SERVICE_DATABASES["inventory"],
    migrations="examples.shop.inventory",
    sagas=[ORDER_SAGA],
    publishes=["product.updated"],
    routes=routes,
    router=router,
)
