"""The order saga, two ways: the flows of the two seeds, each one definition that runs
orchestrated or choreographed alike.

Both start with the order service's own transaction (the order PENDING, and the start of
the saga); undoing it cancels the order. Each has a pivot: once it succeeds, the saga only
goes forward. A step that times out may have happened, so its compensation runs too (a
refund or a release is a no-op when there was nothing to undo).
"""

from enum import StrEnum

from examples.shop.messages import Outcome, Placed
from sagakit import Action, SagaDefinition, Step, StepKind

CREATE_ORDER = Step(
    "create_order",
    compensation=Action("order.cancel", "order.cancelled", reply=Outcome),
)


def take_payment(kind: StepKind) -> Step:
    """Charge the order's amount; a refund undoes it (and voids a charge still to come)."""
    return Step(
        "take_payment",
        Action("payment.process", "payment.success", reply=Outcome),
        failure=("payment.failed",),
        compensation=Action("payment.refund", "payment.refunded", reply=Outcome),
        kind=kind,
    )


CONFIRM_ORDER = Step(
    "confirm_order",
    Action("order.confirm", "order.confirmed", reply=Outcome),
    kind=StepKind.RETRIABLE,
)

RESERVE_FIRST = SagaDefinition(
    name="order",
    steps=(
        CREATE_ORDER,
        Step(
            "reserve_stock",
            Action("inventory.reserve", "inventory.reserved", reply=Outcome),
            failure=("inventory.failed",),
            compensation=Action("inventory.release", "inventory.released", reply=Outcome),
        ),
        take_payment(StepKind.PIVOT),
        Step(
            "commit_stock",
            Action("inventory.complete", "inventory.completed", reply=Outcome),
            kind=StepKind.RETRIABLE,
        ),
        CONFIRM_ORDER,
    ),
    deadline=60.0,
    data=Placed,
    starts_on="order.created",
)
"""Seed 000's flow: reserve the stock (which prices the order), take the payment (the
pivot), then sell the reserved stock and confirm. Out of stock: nothing was charged."""

PAY_FIRST = SagaDefinition(
    name="order_pay_first",
    steps=(
        CREATE_ORDER,
        take_payment(StepKind.COMPENSATABLE),
        Step(
            "sell_stock",
            Action("inventory.sell", "inventory.sold", reply=Outcome),
            failure=("inventory.failed",),
            # a sale that timed out may have happened: restocking gives it back
            compensation=Action("inventory.restock", "inventory.restocked", reply=Outcome),
            kind=StepKind.PIVOT,
        ),
        CONFIRM_ORDER,
    ),
    deadline=60.0,
    data=Placed,
)
"""Seed 001's flow: charge the order at the price the order service knows, then sell the
stock (the pivot), then confirm. Out of stock: the payment is refunded (the refund the seed
left out)."""


class Flow(StrEnum):
    RESERVE_FIRST = "reserve-first"
    PAY_FIRST = "pay-first"

    @property
    def definition(self) -> SagaDefinition:
        return RESERVE_FIRST if self is Flow.RESERVE_FIRST else PAY_FIRST


FLOWS = (RESERVE_FIRST, PAY_FIRST)
"""Every service hosts both: each order names its flow."""
