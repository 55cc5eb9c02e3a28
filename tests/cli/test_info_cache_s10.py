"""`samkit info --cache-dir`: a folder that does not exist (or a file) is an error, said as the
other command-line errors (`samkit info: error: ...`, exit status 2), not a listing where every
checkpoint is silently "no"; the default cache folder, which a fresh user does not have yet,
is listed with a note."""

from __future__ import annotations

import json

import pytest

from samkit.cli import main


@pytest.mark.parametrize("json_out", [[], ["--json"]])
def test_missing_cache_dir_is_an_error(tmp_path, capsys, json_out) -> None:
    missing = tmp_path / "nope"
    assert main(["info", "--cache-dir", str(missing), *json_out]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"samkit info: error: --cache-dir {missing}: no such folder"), err
    assert "samkit download --cache-dir" in err and not missing.exists()


def test_a_file_is_no_cache_dir(tmp_path, capsys) -> None:
    file = tmp_path / "sam_vit_b_01ec64.pth"
    file.write_bytes(b"")
    assert main(["info", "--cache-dir", str(file)]) == 2
    assert f"--cache-dir {file}: not a folder" in capsys.readouterr().err


def test_default_cache_not_made_yet_is_listed_with_a_note(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path / "fresh"))
    assert main(["info"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith(f"checkpoint cache: {tmp_path / 'fresh'}") and "not made yet" in line
    assert main(["info", "--cache-dir", str(tmp_path), "--json"]) == 0  # an existing folder
    assert json.loads(capsys.readouterr().out)["cache_dir"] == str(tmp_path)
