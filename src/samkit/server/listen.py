"""The listening socket of `samkit serve`, opened before anything is printed or built.

uvicorn binds its socket only after the app has started, so a busy port used to fail after
the URL had been printed, with a bare "[Errno 98] address already in use". Binding first lets
the command fail at once with a sentence that says what to do.
"""

from __future__ import annotations

import errno
import socket


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), for `uvicorn.Server.run(sockets=[...])`.

    Args:
        host: address or name to bind ("127.0.0.1", "0.0.0.0", "::1", "localhost").
        port: TCP port, 0-65535 (0: any free port; read it from `getsockname()`).

    Raises:
        ValueError: the port is taken, needs privileges, the host is not an address of this
            machine, or the values are out of range; the message says which and what to do.
    """
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"--port {port}: a TCP port is 0-65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ValueError(
            f"--host {host}: not an address or known host name ({e.strerror})"
        ) from None
    fam, kind, proto, _, addr = infos[0]
    sock = socket.socket(fam, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ValueError(
                f"port {port} on {host} is already in use (another samkit serve or another "
                f"server): stop that one, or pick a free port with --port, e.g. --port {port + 1}"
            ) from None
        if e.errno == errno.EACCES:
            raise ValueError(
                f"port {port} on {host} needs privileges this user lacks (ports below 1024 "
                "usually do): use a port above 1024, e.g. --port 8000"
            ) from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise ValueError(
                f"--host {host}: not an address of this machine; use 127.0.0.1 (this machine "
                "only) or 0.0.0.0 (every interface)"
            ) from None
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock
