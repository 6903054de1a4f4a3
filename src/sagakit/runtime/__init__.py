"""Hosting services: a :class:`Service` declares what a process does (its database, its
message handlers, the sagas it orchestrates, its HTTP routes); the host runs it."""

from sagakit.runtime.service import ContractError, Mode, Service, check_system
from sagakit.runtime.start import start_saga

__all__ = ["ContractError", "Mode", "Service", "check_system", "start_saga"]
