"""The order saga, orchestrated: reserve stock, take payment (the pivot), then finish.

Step 0 is the order service's own transaction (order PENDING + ``order.created``); undoing it
cancels the order. Payment is the pivot: once it succeeds, the saga only goes forward.
If payment times out its outcome is unknown, so its compensation (a refund, a no-op when
nothing was charged) runs too.
"""

from examples.shop.messages import Outcome, Placed
from sagakit import Action, SagaDefinition, Step, StepKind

ORDER_SAGA = SagaDefinition(
    name="order",
    steps=(
        Step(
            "create_order",
            compensation=Action("order.cancel", "order.cancelled", reply=Outcome),
        ),
        Step(
            "reserve_stock",
            Action("inventory.reserve", "inventory.reserved", reply=Outcome),
            failure=("inventory.failed",),
            compensation=Action("inventory.release", "inventory.released", reply=Outcome),
        ),
        Step(
            "take_payment",
            Action("payment.process", "payment.success", reply=Outcome),
            failure=("payment.failed",),
            compensation=Action("payment.refund", "payment.refunded", reply=Outcome),
            kind=StepKind.PIVOT,
        ),
        Step(
            "commit_stock",
            Action("inventory.complete", "inventory.completed", reply=Outcome),
            kind=StepKind.RETRIABLE,
        ),
        Step(
            "confirm_order",
            Action("order.confirm", "order.confirmed", reply=Outcome),
            kind=StepKind.RETRIABLE,
        ),
    ),
    deadline=60.0,
    data=Placed,
    starts_on="order.created",
)
