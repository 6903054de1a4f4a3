"""Who may use the console: credentials from the environment, refused beyond loopback
without one, and the forms' per-process token."""

from __future__ import annotations

import base64

import pytest

from sagakit.console.auth import Credentials, is_loopback
from sagakit.errors import ConfigError


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.5", "::", "example.com"))


def test_without_a_credential_only_loopback_is_served(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGAKIT_OPERATOR", "ada")
    open_ = Credentials.from_env({})
    open_.check_host("127.0.0.1")
    assert open_.who(None) == "ada"
    with pytest.raises(ConfigError, match="SAGAKIT_CONSOLE_USERS"):
        open_.check_host("0.0.0.0")


def test_users_are_checked_and_named() -> None:
    c = Credentials.from_env({"SAGAKIT_CONSOLE_USERS": "ada:s3cret, bob:pw"})
    c.check_host("0.0.0.0")
    assert c.who(basic("ada", "s3cret")) == "ada"
    assert c.who(basic("bob", "pw")) == "bob"
    assert c.who(basic("ada", "pw")) is None
    assert c.who(basic("eve", "s3cret")) is None
    assert c.who(None) is None
    assert c.who("Basic !!!not base64") is None
    assert c.who("Basic " + base64.b64encode(b"\xff\xfe:x").decode()) is None
    assert c.who("Bearer s3cret") is None, "no token configured"


def test_a_token_as_bearer_or_as_a_password() -> None:
    c = Credentials.from_env({"SAGAKIT_CONSOLE_TOKEN": "t0ken"})
    assert c.who("Bearer t0ken") == "token holder"
    assert c.who(basic("carol", "t0ken")) == "carol (token holder)"
    assert c.who("Bearer nope") is None and c.who(basic("carol", "nope")) is None


@pytest.mark.parametrize("users", ["ada", "ada:", ":pw", "ada:pw,bob"])
def test_malformed_users_are_a_clear_error(users: str) -> None:
    with pytest.raises(ConfigError, match="name:password"):
        Credentials.from_env({"SAGAKIT_CONSOLE_USERS": users})


def test_forms_carry_this_process_token() -> None:
    c, other = Credentials(), Credentials()
    assert c.form_ok(c.form_token)
    assert not c.form_ok(other.form_token) and not c.form_ok(None) and not c.form_ok("")


@pytest.mark.parametrize(
    "header",
    ["Bearer é", "Basic é", "Basic " + base64.b64encode("ada:pässword".encode()).decode(), "é"],
)
def test_any_header_is_refused_not_an_error(header: str) -> None:
    c = Credentials.from_env({"SAGAKIT_CONSOLE_USERS": "ada:s3cret", "SAGAKIT_CONSOLE_TOKEN": "t"})
    assert c.who(header) is None
    assert not c.form_ok("ü")
