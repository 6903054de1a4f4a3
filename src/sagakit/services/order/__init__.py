"""The order service: takes orders over HTTP and starts their sagas."""

from sagakit.db import MigrationSet
from sagakit.services import SERVICE_DATABASES
from sagakit.services.host import ServiceSpec
from sagakit.services.order.api import routes
from sagakit.services.order.handlers import router
from sagakit.services.order.stuck import watch

SPEC = ServiceSpec(
    name="order",
    database=SERVICE_DATABASES["order"],
    migrations=MigrationSet.from_package("order", "sagakit.services.order"),
    routes=routes,
    router=router,
    background=(watch,),
)
