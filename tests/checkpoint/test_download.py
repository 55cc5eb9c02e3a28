"""samkit.checkpoint.download against a real HTTP server on 127.0.0.1 (no internet access)."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import socket
import threading
from functools import partial
from pathlib import Path

import pytest

from samkit.checkpoint import (
    CheckpointUnavailableError,
    checkpoint_path,
    default_cache_dir,
    download_file,
    fetch_checkpoint,
)
from samkit.configs import sam as configs

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, more than one read chunk
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
WRONG_SHA = "0" * 64


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        if self.path == "/short.pt":  # promises more bytes than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/'srv' on a free loopback port; yields (base_url, served_dir, paths)."""
    root = tmp_path / "srv"
    root.mkdir()
    (root / "model.pt").write_bytes(PAYLOAD)
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_Handler, directory=str(root))
    )
    httpd.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, httpd.paths
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


# ---------------------------------------------------------------------------- download_file


def test_download_with_correct_sha256(server, tmp_path):
    base, _, paths = server
    dest = tmp_path / "cache" / "nested" / "model.pt"
    seen: list[tuple[int, int | None]] = []
    out = download_file(
        f"{base}/model.pt", dest, PAYLOAD_SHA.upper(), progress_fn=lambda d, t: seen.append((d, t))
    )
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert _files(dest.parent) == ["model.pt"]  # no .part left behind
    assert paths == ["/model.pt"]
    assert seen[0] == (0, len(PAYLOAD))
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_download_replaces_existing_file_atomically(server, tmp_path):
    base, _, _ = server
    dest = tmp_path / "model.pt"
    dest.write_bytes(b"old")
    download_file(f"{base}/model.pt", dest, PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_sha256_mismatch_deletes_everything(server, tmp_path):
    base, _, _ = server
    dest = tmp_path / "dl" / "model.pt"
    with pytest.raises(ValueError) as info:
        download_file(f"{base}/model.pt", dest, WRONG_SHA, progress=False)
    msg = str(info.value)
    assert f"{base}/model.pt" in msg and WRONG_SHA in msg and PAYLOAD_SHA in msg
    assert not isinstance(info.value, CheckpointUnavailableError)
    assert _files(dest.parent) == []


def test_without_sha256_warns_with_actual_hash(server, tmp_path, caplog):
    base, _, _ = server
    with caplog.at_level(logging.WARNING, logger="samkit"):
        download_file(f"{base}/model.pt", tmp_path / "m.pt", None, progress=False)
    assert (tmp_path / "m.pt").read_bytes() == PAYLOAD
    assert any(
        "not verified" in r.getMessage() and PAYLOAD_SHA in r.getMessage() for r in caplog.records
    )


def test_http_404_is_clear_error(server, tmp_path):
    base, _, _ = server
    dest = tmp_path / "dl" / "missing.pt"
    with pytest.raises(CheckpointUnavailableError) as info:
        download_file(f"{base}/missing.pt", dest, WRONG_SHA, progress=False)
    msg = str(info.value)
    assert "HTTP 404" in msg and f"{base}/missing.pt" in msg and str(dest) in msg
    assert _files(dest.parent) == []


def test_connection_closed_early(server, tmp_path):
    base, _, _ = server
    dest = tmp_path / "dl" / "short.pt"
    with pytest.raises(CheckpointUnavailableError, match=r"closed after 1000 of 100000 bytes"):
        download_file(f"{base}/short.pt", dest, None, progress=False, timeout=5)
    assert _files(dest.parent) == []


def test_file_url(tmp_path):
    src = tmp_path / "src dir" / "model.pt"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "model.pt"
    download_file(src.as_uri(), dest, PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(CheckpointUnavailableError):
        download_file((tmp_path / "absent.pt").as_uri(), tmp_path / "x.pt", None, progress=False)


def test_server_down_names_url_and_destination(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/sam_vit_b.pth"
    dest = tmp_path / "cache" / "sam_vit_b.pth"
    with pytest.raises(CheckpointUnavailableError) as info:
        download_file(url, dest, WRONG_SHA, progress=False, timeout=5)
    msg = str(info.value)
    assert url in msg and str(dest) in msg
    assert "Traceback" not in msg
    assert info.value.url == url and info.value.path == dest
    assert _files(dest.parent) == []


def test_silent_server_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (kernel backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/m.pt"
        with pytest.raises(CheckpointUnavailableError, match=r"no answer within 0\.3 s"):
            download_file(url, tmp_path / "m.pt", None, progress=False, timeout=0.3)
    assert _files(tmp_path) == []


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unsupported URL"):
        download_file("ftp://example.org/m.pt", tmp_path / "m.pt", None)
    with pytest.raises(ValueError, match="64 hexadecimal"):
        download_file("http://127.0.0.1:1/m.pt", tmp_path / "m.pt", "abc")


# ---------------------------------------------------------------------------- cache / registry


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("SAMKIT_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "samkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "samkit"


@pytest.fixture
def test_variant(server, monkeypatch):
    base, root, paths = server
    v = configs.Variant("test_tiny", "sam1", None, f"{base}/model.pt", PAYLOAD_SHA)
    monkeypatch.setitem(configs.VARIANTS, "test_tiny", v)
    return v, root, paths


def test_checkpoint_path_uses_filename(test_variant, tmp_path, monkeypatch):
    assert checkpoint_path("test_tiny", tmp_path) == tmp_path / "model.pt"
    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path / "env"))
    assert checkpoint_path("test_tiny") == tmp_path / "env" / "model.pt"
    assert checkpoint_path("vit_b", tmp_path).name == "sam_vit_b_01ec64.pth"
    with pytest.raises(ValueError, match="unknown samkit variant"):
        checkpoint_path("no_such_variant", tmp_path)


def test_fetch_downloads_once_then_uses_cache(test_variant, tmp_path):
    _, _, paths = test_variant
    cache = tmp_path / "cache"
    p1 = fetch_checkpoint("test_tiny", cache, progress=False)
    assert p1 == cache / "model.pt" and p1.read_bytes() == PAYLOAD
    assert paths == ["/model.pt"]
    stamp = json.loads((cache / "model.pt.sha256").read_text())
    assert stamp["sha256"] == PAYLOAD_SHA and stamp["size"] == len(PAYLOAD)
    p2 = fetch_checkpoint("test_tiny", cache, progress=False)
    assert p2 == p1
    assert paths == ["/model.pt"]  # second call did no network request
    assert fetch_checkpoint("test_tiny", cache, download=False) == p1


def test_fetch_verifies_existing_file_once(test_variant, tmp_path, monkeypatch):
    _, _, paths = test_variant
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "model.pt").write_bytes(PAYLOAD)  # e.g. copied in by hand
    from samkit.checkpoint import download as dl

    calls: list[Path] = []
    real = dl.sha256_file
    monkeypatch.setattr(dl, "sha256_file", lambda p: calls.append(Path(p)) or real(p))
    assert fetch_checkpoint("test_tiny", cache, download=False) == cache / "model.pt"
    assert fetch_checkpoint("test_tiny", cache, download=False) == cache / "model.pt"
    assert len(calls) == 1  # hashed once, then the stamp is trusted
    assert paths == []


def test_fetch_rejects_changed_or_wrong_cached_file(test_variant, tmp_path):
    cache = tmp_path / "cache"
    path = fetch_checkpoint("test_tiny", cache, progress=False)
    path.write_bytes(PAYLOAD[:-1])  # corrupted after the stamp was written
    with pytest.raises(ValueError) as info:
        fetch_checkpoint("test_tiny", cache, progress=False)
    msg = str(info.value)
    assert str(path) in msg and PAYLOAD_SHA in msg and "delete it" in msg


def test_fetch_sha256_mismatch_from_server(server, monkeypatch, tmp_path):
    base, _, _ = server
    v = configs.Variant("test_bad", "sam1", None, f"{base}/model.pt", WRONG_SHA)
    monkeypatch.setitem(configs.VARIANTS, "test_bad", v)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        fetch_checkpoint("test_bad", tmp_path / "c", progress=False)
    assert _files(tmp_path / "c") == []


def test_fetch_without_download_says_what_to_do(test_variant, tmp_path):
    v, _, paths = test_variant
    with pytest.raises(CheckpointUnavailableError) as info:
        fetch_checkpoint("test_tiny", tmp_path / "c", download=False)
    msg = str(info.value)
    assert v.url in msg and str(tmp_path / "c" / "model.pt") in msg
    assert "SAMKIT_CACHE" in msg and "--checkpoint PATH" in msg and "checkpoint=" in msg
    assert paths == []


def test_fetch_offline_says_what_to_do(monkeypatch, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/sam_offline.pth"
    monkeypatch.setitem(
        configs.VARIANTS, "test_offline", configs.Variant("test_offline", "sam1", None, url, None)
    )
    cache = tmp_path / "c"
    with pytest.raises(CheckpointUnavailableError) as info:
        fetch_checkpoint("test_offline", cache, progress=False)
    msg = str(info.value)
    assert url in msg and str(cache / "sam_offline.pth") in msg
    assert "SAMKIT_CACHE" in msg and "--checkpoint PATH" in msg
    assert "\n" not in msg  # one paragraph
    assert info.value.__cause__ is None
    assert _files(cache) == []


def test_download_command_offline_says_what_the_user_can_do(monkeypatch, tmp_path, capsys):
    from samkit.cli import build_parser, main

    url = f"http://127.0.0.1:{_closed_port()}/sam_offline.pth"
    monkeypatch.setitem(
        configs.VARIANTS, "test_offline", configs.Variant("test_offline", "sam1", None, url, None)
    )
    cache = tmp_path / "c"
    code = main(["download", "test_offline", "--cache-dir", str(cache)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert url in err and str(cache / "sam_offline.pth") in err
    assert "samkit download test_offline" in err  # then verifies the file put there
    assert "--cache-dir" in err and "--checkpoint PATH" in err
    assert "--random-weights" not in err  # download has no such flag
    args = build_parser().parse_args(["download", "x"])
    assert not hasattr(args, "random_weights")
    assert _files(cache) == []


def test_fetch_404_is_unavailable(server, monkeypatch, tmp_path):
    base, _, _ = server
    monkeypatch.setitem(
        configs.VARIANTS,
        "test_404",
        configs.Variant("test_404", "sam1", None, f"{base}/gone.pt", WRONG_SHA),
    )
    with pytest.raises(CheckpointUnavailableError, match="HTTP 404"):
        fetch_checkpoint("test_404", tmp_path, progress=False)


def test_variant_without_url(monkeypatch, tmp_path):
    monkeypatch.setitem(configs.VARIANTS, "test_nourl", configs.Variant("test_nourl", "sam1", None))
    with pytest.raises(ValueError, match="no official checkpoint"):
        fetch_checkpoint("test_nourl", tmp_path)
    with pytest.raises(ValueError, match="no official checkpoint"):
        checkpoint_path("test_nourl", tmp_path)
