"""One unattended batch over every kind of awkward or hostile file (see ``badcorpus.py``)."""

import os
from pathlib import Path

import pytest
from PIL import Image

from badcorpus import make_corpus
from tinct.cli import main


def _inputs(folder: Path) -> dict[str, object]:
    return {p.name: ("link", os.readlink(p)) if p.is_symlink() else p.read_bytes() for p in folder.iterdir()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus") / "in"
    return folder, make_corpus(folder)


def test_a_batch_over_the_bad_input_corpus(corpus, tiny_model, tmp_path, capsys, caplog):
    src, cases = corpus
    before = _inputs(src)
    out = tmp_path / "out"
    argv = ["colorize", str(src), "-o", str(out), "--model", str(tiny_model), "--size", "32", "--no-progress"]
    with caplog.at_level("WARNING"):
        code = main(argv)
    captured = capsys.readouterr()
    good = {name: case for name, case in cases.items() if case.ok}
    bad = {name: case for name, case in cases.items() if not case.ok}
    assert code == 1
    assert captured.out.strip().splitlines()[-1] == f"done {len(good)}, skipped 0, failed {len(bad)}"
    assert "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("tinct: error:")]
    assert len(errors) == len(bad), errors
    for name, case in bad.items():  # one line each, naming the file and the reason
        assert sum(name in line and case.reason in line for line in errors) == 1, (name, errors)
    messages = [r.getMessage() for r in caplog.records]
    for name, case in cases.items():
        if case.warning:
            assert any(name in m and case.warning in m and "only the first" in m for m in messages), (name, messages)
    assert _inputs(src) == before  # inputs untouched, no file added beside them
    outputs = sorted(p.name for p in out.iterdir())  # no temporary files, nothing for the failures
    assert outputs == sorted(f"{Path(name).stem}.png" for name in good)
    for name, case in good.items():
        with Image.open(out / f"{Path(name).stem}.png") as im:
            assert im.size == case.size, name
            assert (im.mode == "RGBA") == case.alpha, name
    # run again: every output is skipped, the same files fail the same way, nothing changes
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(argv) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"done 0, skipped {len(good)}, failed {len(bad)}"
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    assert _inputs(src) == before
