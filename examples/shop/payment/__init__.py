"""The payment service: customer balances, charges and refunds."""

from examples.shop import SERVICE_DATABASES
from examples.shop.payment.api import routes
from examples.shop.payment.handlers import router
from examples.shop.saga import ORDER_SAGA
from sagakit import Service

service = Service(
    "payment",
    database=SERVICE_DATABASES["payment"],
    migrations="examples.shop.payment",
    sagas=[ORDER_SAGA],
    routes=routes,
    router=router,
)
