import logging

import pytest

from sagakit.messaging import new_message
from sagakit.messaging.logcontext import MessageContextFilter, handling


def test_records_carry_the_message_being_handled(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("sagakit.test")
    caplog.handler.addFilter(MessageContextFilter())
    env = new_message("inventory.reserve", {}, key="order-7")
    with caplog.at_level(logging.INFO), handling(env):
        log.info("inside")
    log.warning("outside")
    inside, outside = caplog.records
    assert (inside.saga_id, inside.message_type) == ("order-7", "inventory.reserve")  # type: ignore[attr-defined]
    assert inside.message_id == str(env.message_id)  # type: ignore[attr-defined]
    assert outside.saga_id == "-"  # type: ignore[attr-defined]
