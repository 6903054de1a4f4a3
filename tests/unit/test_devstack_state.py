import os
import socket

from sagakit.devstack.stack import _serving


def test_a_live_pid_is_not_enough_its_port_must_answer() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert _serving(os.getpid(), f"postgresql://postgres@127.0.0.1:{port}/postgres")
        assert _serving(os.getpid(), f"127.0.0.1:{port}")
    assert not _serving(os.getpid(), f"127.0.0.1:{port}"), "nothing listens any more"
    assert not _serving(None, f"127.0.0.1:{port}")
