"""The payment service: customer balances, charges and refunds."""

from sagakit.db import MigrationSet
from sagakit.services import SERVICE_DATABASES
from sagakit.services.host import ServiceSpec
from sagakit.services.payment.api import routes
from sagakit.services.payment.handlers import router

SPEC = ServiceSpec(
    name="payment",
    database=SERVICE_DATABASES["payment"],
    migrations=MigrationSet.from_package("payment", "sagakit.services.payment"),
    routes=routes,
    router=router,
)
