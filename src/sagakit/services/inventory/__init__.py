"""The inventory service: stock per product, reserved for orders, then sold or released."""

from sagakit.db import MigrationSet
from sagakit.services import SERVICE_DATABASES
from sagakit.services.host import ServiceSpec
from sagakit.services.inventory.api import routes
from sagakit.services.inventory.handlers import router

SPEC = ServiceSpec(
    name="inventory",
    database=SERVICE_DATABASES["inventory"],
    migrations=MigrationSet.from_package("inventory", "sagakit.services.inventory"),
    routes=routes,
    router=router,
)
