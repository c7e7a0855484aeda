"""The realism study without a browser: CSV recorder, report, trial plans and pairs; and the
web app's request handling (paths, limits, options) without a server."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinct.cli import main
from tinct.study import CSV_FIELDS, StudyPhotos, StudyRecorder, format_report, study_report, wilson_interval

from conftest import color_image


def test_wilson_interval_golden():
    # reference values (Wilson score, z = 1.96): 5/10 -> 0.2366-0.7634, 0/10 -> 0-0.2775, 9/10 -> 0.5958-0.9821
    for k, n, lo, hi in [(5, 10, 0.2366, 0.7634), (0, 10, 0.0, 0.2775), (9, 10, 0.5958, 0.9821)]:
        low, high = wilson_interval(k, n)
        assert low == pytest.approx(lo, abs=1e-4) and high == pytest.approx(hi, abs=1e-4)
    assert all(np.isnan(v) for v in wilson_interval(0, 0))


def test_recorder_appends_and_survives_reopen(tmp_path):
    path = tmp_path / "answers.csv"
    rec = StudyRecorder(path)
    rec.record("p1", 1, "a.jpg", "default", "left", "right", 1234.4, 1000)
    # a new server on the same file appends (a crash or restart loses nothing)
    StudyRecorder(path).record("p2", 1, "b.jpg", "cic", "right", "right", 900, 1000)
    rows = list(csv.DictReader(path.open()))
    assert tuple(rows[0]) == CSV_FIELDS
    assert [(r["participant"], r["model"], r["fooled"]) for r in rows] == [("p1", "default", "1"), ("p2", "cic", "0")]
    assert rows[0]["response_ms"] == "1234"
    with pytest.raises(ValueError):
        rec.record("p1", 2, "a.jpg", "default", "up", "left", 1, 1)


def test_recorder_refuses_a_foreign_csv(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a tinct study CSV"):
        StudyRecorder(path)


def test_report_per_model(tmp_path, capsys):
    path = tmp_path / "answers.csv"
    rec = StudyRecorder(path)
    for i in range(10):  # default fools 3 of 10 (two participants), cic 1 of 4 (one participant)
        rec.record(f"p{i % 2}", i, f"{i}.jpg", "default", "left", "right" if i < 3 else "left", 500, 1000)
    for i in range(4):
        rec.record("p9", i, f"{i}.jpg", "cic", "right", "left" if i == 0 else "right", 500, 1000)
    results = {r["model"]: r for r in study_report(path)}
    assert results["default"]["trials"] == 10 and results["default"]["fooled"] == 3
    assert results["default"]["participants"] == 2 and results["default"]["fooling_rate"] == pytest.approx(0.3)
    assert results["default"]["ci95"] == pytest.approx(list(wilson_interval(3, 10)))
    assert results["cic"]["participants"] == 1 and results["all"]["trials"] == 14
    assert main(["study", "report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "default" in out and "0.300" in out and "chance: 0.5" in out
    assert '"fooling_rate"' in format_report(study_report(path), as_json=True)
    assert main(["study", "report", str(tmp_path / "missing.csv")]) == 2


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for i in range(5):
        color_image(90, 60, seed=i).save(folder / f"photo{i}.png")
    color_image(90, 60, seed=9).convert("L").convert("RGB").save(folder / "gray.png")
    (folder / "notes.txt").write_text("not a photo")
    return folder


@pytest.fixture(scope="module")
def colorizers(tiny_model):
    from tinct.pipeline import Colorizer

    return {"a": Colorizer(str(tiny_model), device="cpu"), "b": Colorizer(str(tiny_model), device="cpu")}


def test_study_plan_and_pairs(study_dir, colorizers):
    photos = StudyPhotos(study_dir, colorizers, display_size=64)
    assert len(photos.photos) == 6  # images only
    plan = photos.plan(4, np.random.default_rng(0))
    assert len(plan) == 4 and len({p for p, _ in plan}) == 4  # no photo twice for a participant
    assert sorted(m for _, m in plan) == ["a", "a", "b", "b"]  # models balanced
    assert len(photos.plan(100, np.random.default_rng(1))) == 6
    pair = photos.pair("photo0.png", "a")
    real, fake = (Image.open(io.BytesIO(b)) for b in (pair.real, pair.fake))
    assert real.size == fake.size and max(real.size) == 64 and real.format == fake.format == "JPEG"
    with pytest.raises(ValueError, match="gray"):
        photos.pair("gray.png", "a")
    assert "gray.png" not in photos.usable()
    with pytest.raises(ValueError, match="not a photo of this study"):
        photos.pair("../../etc/passwd", "a")


def test_serve_without_gradio_prints_install_hint(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'tinct[serve]'" in err


@pytest.fixture(scope="module")
def app(tiny_model, study_dir, tmp_path_factory):
    pytest.importorskip("gradio", reason="gradio is not installed (pip install 'tinct[serve]')")
    from tinct.serve import ServeConfig, TinctApp

    app = TinctApp(ServeConfig(models=[str(tiny_model), "cic", "bigcolor"], device="cpu", max_pixels=10_000,
                               study_dir=str(study_dir), study_csv=str(tmp_path_factory.mktemp("study") / "s.csv"),
                               trials=3, seed=0))
    app.build()
    yield app
    app.close()
    assert not app.root.exists()  # the temporary folder is removed


def _upload(app, name: str, image: Image.Image | bytes):
    folder = app.root / "upload-test"
    folder.mkdir(exist_ok=True)
    path = folder / name
    if isinstance(image, bytes):
        path.write_bytes(image)
    else:
        image.save(path)
    return str(path)


def test_request_paths_limits_and_messages(app, tmp_path):
    model = next(iter(app.colorizers))
    ok = _upload(app, "ok photo (1).png", color_image(80, 60).convert("L"))
    huge = _upload(app, "huge.png", Image.new("L", (200, 100), 128))  # 20,000 pixels > 10,000
    text = _upload(app, "notes.png", b"not an image")
    outside = tmp_path / "elsewhere.png"
    color_image(40, 40).save(outside)
    out = app.colorize_request([ok, huge, text, str(outside)], None, model, {})
    assert [r["name"] for r in out["results"]] == ["ok_photo_1.png"]  # names made by tinct, not taken from the request
    messages = " | ".join(out["errors"])
    assert "huge.png: image is 200x100" in messages and "over the limit of 10,000" in messages
    assert "notes.png: not an image" in messages
    assert "elsewhere.png: refused" in messages  # a path outside the server's folder never reaches the file system
    result = Image.open(out["results"][0]["output"])
    assert result.size == (80, 60) and result.mode == "RGB"
    assert out["zip"].endswith(".zip") and all(app.root in Path(r["output"]).parents for r in out["results"])
    with pytest.raises(ValueError, match="Upload one or more photos"):
        app.colorize_request([], None, model, {})
    with pytest.raises(ValueError, match="over the limit"):
        app.colorize_request([huge], None, model, {})


def test_api_options_are_the_declared_ones(app):
    assert app.api_options("cic", '{"temperature": 0.2}') == {"temperature": 0.2}
    assert app.api_options("bigcolor", '{"samples": 2, "class": "goldfish"}') == {"samples": 2, "class": "goldfish"}
    with pytest.raises(ValueError, match="not accepted by 'cic': samples"):
        app.api_options("cic", '{"samples": 2}')
    with pytest.raises(ValueError, match="reference"):  # image options need the page's upload
        app.api_options("bigcolor", '{"reference": "/etc/passwd"}')
    with pytest.raises(ValueError, match="not JSON"):
        app.api_options("cic", "{")


def test_bounded_queue(app):
    fns = {f.api_name: f for f in app.demo.fns.values()}
    for name in ("colorize", "colorize_page"):  # the page and the API share one limit on model work
        assert fns[name].concurrency_limit == app.config.workers and fns[name].concurrency_id == "models"
    assert app.demo._queue.max_size == app.config.queue_size


def test_page_controls_come_from_declared_options(app):
    from tinct.methods import get_method

    ids = {c.get("props", {}).get("elem_id") for c in app.demo.config["components"]}
    for method in ("cic", "bigcolor"):
        for opt in get_method(method).inference_options:
            assert f"opt-{method}-{opt.name}" in ids
    assert app.option_default("cic", get_method("cic").inference_options[0]) == pytest.approx(0.38)


def test_study_answer_writes_a_row(app):
    state = app.study_start()
    page = app.study_next(state)
    assert page.count("<img") == 2 and "data:image/jpeg;base64," in page
    row = app.study_answer(state, "left")
    assert row["choice"] == "left" and row["fooled"] == int(row["real_side"] != "left")
    rows = list(csv.DictReader(open(app.config.study_csv)))
    assert len(rows) == 1 and rows[0]["participant"] == state["participant"]
    with pytest.raises(ValueError, match="no trial"):
        app.study_answer(state, "left")
