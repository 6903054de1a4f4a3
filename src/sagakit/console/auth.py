"""Who may use the console, and who did what. Operator actions change production state: on
any address but loopback the console requires a credential from the environment and
refuses to start without one.

- ``SAGAKIT_CONSOLE_USERS``: ``name:password`` pairs, comma-separated (HTTP basic auth; the
  name is recorded with every action);
- ``SAGAKIT_CONSOLE_TOKEN``: a shared token, sent as ``Authorization: Bearer TOKEN`` or as
  the basic-auth password (the basic-auth name is recorded, marked as a token holder).

With neither, on loopback, anyone on this machine may act; actions are recorded as
``SAGAKIT_OPERATOR`` or the login name, and only requests naming a loopback host are served
(a web page whose name was rebound to 127.0.0.1 gets nothing). Every form carries a
per-process token, so that another web page cannot make a browser post an action.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from sagakit.errors import ConfigError
from sagakit.operator import local_operator


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Credentials:
    users: Mapping[str, str] = field(default_factory=dict)
    token: str | None = None
    form_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    """Carried by every form of this process; a post without it is refused."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Credentials:
        users: dict[str, str] = {}
        for pair in filter(
            None, (p.strip() for p in env.get("SAGAKIT_CONSOLE_USERS", "").split(","))
        ):
            name, sep, password = pair.partition(":")
            if not sep or not name or not password:
                raise ConfigError("SAGAKIT_CONSOLE_USERS: name:password pairs, comma-separated")
            users[name] = password
        return cls(users, env.get("SAGAKIT_CONSOLE_TOKEN") or None)

    @property
    def required(self) -> bool:
        return bool(self.users or self.token)

    def check_host(self, host: str) -> None:
        """Refuse to listen beyond loopback without a credential."""
        if not is_loopback(host) and not self.required:
            raise ConfigError(
                f"the console listens on {host}, beyond this machine: set SAGAKIT_CONSOLE_USERS"
                " (name:password,...) or SAGAKIT_CONSOLE_TOKEN, or listen on 127.0.0.1"
            )

    def who(self, authorization: str | None) -> str | None:
        """The operator the ``Authorization`` header names, or None if it does not prove
        one (with no credential configured: the local operator)."""
        if not self.required:
            return local_operator()
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and self.token:
            return "token holder" if _same(value.strip(), self.token) else None
        if scheme.lower() != "basic":
            return None
        try:
            name, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):  # (binascii.Error is a ValueError)
            return None
        known = self.users.get(name)
        if known is not None and _same(password, known):
            return name
        if self.token and _same(password, self.token):
            return f"{name or 'someone'} (token holder)"
        return None

    @property
    def hosts(self) -> list[str] | None:
        """The ``Host`` names served: loopback ones when anyone on the machine may act (no
        credential), any otherwise."""
        return None if self.required else ["127.0.0.1", "localhost", "::1", "[::1]"]

    def form_ok(self, value: str | None) -> bool:
        return value is not None and _same(value, self.form_token)


def _same(given: str, secret: str) -> bool:
    """Constant-time comparison of any text (``compare_digest`` refuses non-ASCII str)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), secret.encode())
