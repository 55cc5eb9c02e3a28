"""Where `samkit serve` listens (`samkit.server.listen`): a busy port, a bad port or host is a
clear error before any URL is printed."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from samkit.server.listen import listen_socket
from tests.processes import samkit_env
from tests.server.conftest import SHAPES


def test_serve_on_a_busy_port_fails_before_printing_its_url():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = [sys.executable, "-m", "samkit", "serve", "--port", str(port),
               "--model", str(SHAPES / "config.json"), "--checkpoint", str(SHAPES / "sam1_shapes.pth")]  # fmt: skip
        r = subprocess.run(cmd, env=samkit_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert f"samkit serve: error: port {port} on 127.0.0.1 is already in use" in r.stderr
    assert f"--port {port + 1}" in r.stderr
    assert "http://" not in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_listen_socket_errors():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=f"port {port} on 127.0.0.1 is already in use"):
            listen_socket("127.0.0.1", port)
    with pytest.raises(ValueError, match="0-65535"):
        listen_socket("127.0.0.1", 70000)
    with pytest.raises(ValueError, match="not an address"):
        listen_socket("no-such-host.invalid", 8000)
    sock = listen_socket("127.0.0.1", 0)  # a free port works, and is what the URL shows
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()
