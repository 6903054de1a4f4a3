"""The order saga, orchestrated: reserve stock, take payment (the pivot), then finish.

Step 0 is the order service's own transaction (order PENDING + ``order.created``); undoing it
cancels the order. Payment is the pivot: once it succeeds, the saga only goes forward.
If payment times out its outcome is unknown, so its compensation (a refund, a no-op when
nothing was charged) runs too.
"""

from sagakit.saga import Action, SagaDefinition, Step, StepKind

ORDER_SAGA = SagaDefinition(
    name="order",
    steps=(
        Step(
            "create_order",
            compensation=Action("order.cancel", "order.cancelled"),
        ),
        Step(
            "reserve_stock",
            Action("inventory.reserve", "inventory.reserved"),
            failure=("inventory.failed",),
            compensation=Action("inventory.release", "inventory.released"),
        ),
        Step(
            "take_payment",
            Action("payment.process", "payment.success"),
            failure=("payment.failed",),
            compensation=Action("payment.refund", "payment.refunded"),
            kind=StepKind.PIVOT,
        ),
        Step(
            "commit_stock",
            Action("inventory.complete", "inventory.completed"),
            kind=StepKind.RETRIABLE,
        ),
        Step(
            "confirm_order",
            Action("order.confirm", "order.confirmed"),
            kind=StepKind.RETRIABLE,
        ),
    ),
    deadline=60.0,
)
