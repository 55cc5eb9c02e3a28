"""The one progress reporter (samkit.io.progress): lines off a terminal, a tqdm bar on one, quiet."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from samkit.io.progress import Progress
from tests.conftest import ROOT


def test_off_a_terminal_it_writes_plain_lines_with_rate_and_eta() -> None:
    out = io.StringIO()
    with Progress(3, "auto", "images", file=out) as p:
        for i in range(3):
            p.update(1, f"x{i}.jpg: 2 masks")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[0].startswith("auto: 1/3 images | ") and lines[0].endswith(", x0.jpg: 2 masks")
    assert lines[-1].startswith("auto: 3/3 images | ") and " images/s | ETA " in lines[-1]


def test_quiet_mode_writes_nothing_and_every_s_thins_the_lines() -> None:
    out = io.StringIO()
    with Progress(5, "auto", "images", enabled=False, file=out) as p:
        for _ in range(5):
            p.update()
    assert out.getvalue() == "" and p.n == 5
    out = io.StringIO()
    with Progress(10, "finetune", "steps", initial=4, every_s=3600, file=out) as p:
        for _ in range(6):
            p.update()
    # the first and the last update only; the resumed run starts at 4
    assert [ln.split(" |")[0] for ln in out.getvalue().splitlines()] == [
        "finetune: 5/10 steps",
        "finetune: 10/10 steps",
    ]


def test_set_takes_a_running_count_and_bad_totals_are_refused() -> None:
    out = io.StringIO()
    p = Progress(4, "segment everything", "batches", file=out)
    p.set(2, "decode")
    p.set(4, "done")
    assert [ln.split(" |")[0] for ln in out.getvalue().splitlines()] == [
        "segment everything: 2/4 batches",
        "segment everything: 4/4 batches",
    ]
    with pytest.raises(ValueError, match="total and initial must be >= 0"):
        Progress(-1, "x", "items")


def test_on_a_terminal_it_draws_a_tqdm_bar() -> None:
    code = (
        "from samkit.io.progress import Progress\n"
        "with Progress(2, 'tracking', 'frames') as p:\n"
        "    p.update(1, 'a'); p.update(1, 'b')\n"
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: a real terminal 100 columns wide
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        os.execvpe(sys.executable, [sys.executable, "-c", code], env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    assert "\r" in text and "tracking: 100%|" in text and "2/2 frames" in text, text
    assert "frames/s" in text and ", b]" in text


def test_the_cli_shows_no_bar_when_stderr_is_a_file(tmp_path) -> None:
    code = (
        "import sys\nfrom samkit.io.progress import Progress\n"
        "with Progress(2, 'eval', 'images') as p:\n    p.update(); p.update()\n"
    )
    err = tmp_path / "err.log"
    with err.open("w") as f:
        subprocess.run([sys.executable, "-c", code], stderr=f, check=True, timeout=120)
    assert [ln.split(" |")[0] for ln in err.read_text().splitlines()] == [
        "eval: 1/2 images",
        "eval: 2/2 images",
    ]


def test_bytes_with_si_prefixes_and_an_unknown_total() -> None:
    out = io.StringIO()
    with Progress(12_000_000, "downloading m.pt", "B", scale=True, file=out) as p:
        p.update(5_300_000)
    assert out.getvalue().startswith("downloading m.pt: 5.30M/12.0MB | ")
    out = io.StringIO()
    with Progress(None, "downloading m.pt", "B", scale=True, file=out) as p:
        p.update(5_300_000)
    line = out.getvalue().strip()
    assert line.startswith("downloading m.pt: 5.30MB | ") and "ETA" not in line
