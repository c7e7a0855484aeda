"""``tinct serve``: a web page to colorize, compare and download, and a realism study.

Built on Gradio (the ecosystem's convention for model demos: uploads with drag and drop and
paste, a request queue with bounded concurrency, progress, a before/after slider, galleries,
downloads and a client API, all maintained upstream), on the same :class:`tinct.Colorizer`
API as the command line.

Pages:

- ``/`` (Colorize): upload one or many photos (drag and drop, or paste one), pick the model
  and its options (the controls are generated from each method's declared
  :attr:`~tinct.methods.ColorizationMethod.inference_options`, so a new method needs no page
  change), see the result next to the input with a before/after slider and every output
  (BigColor's samples) in a gallery, download one PNG or all results as a ZIP, read the
  model card.
- ``/study`` (only with ``--study DIR``): the seed papers' two-alternative forced choice, see
  :mod:`tinct.study`.

Limits: uploads over ``max_upload_mb`` are refused by the server (and by the page, before
sending); images over ``max_pixels`` and files that are not images get a message naming the
file and the reason, and the other files of the batch are still colorized. Colorizing runs
in a queue of at most ``queue_size`` waiting requests, ``workers`` at a time. Uploads and
results live in one temporary folder of this server, removed when it stops; results older
than an hour are swept while it runs. No path from a request reaches the file system: uploads
are stored by Gradio under that folder (files named elsewhere are refused), tinct reads only
files inside it, and names its outputs itself. The server binds to 127.0.0.1 unless told
otherwise.
"""

from __future__ import annotations

import base64
import html
import io as _bytes_io
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .io import ImageReadError, read_image
from .methods import InferenceOption, get_method
from .nets.efficientnet import imagenet_class_names
from .pipeline import Colorizer
from .study import StudyPhotos, StudyRecorder
from .weights import DEFAULT_MODEL, list_models, resolve_model

log = logging.getLogger(__name__)

__all__ = ["ServeConfig", "TinctApp", "serve", "require_gradio", "GRADIO_MISSING"]

GRADIO_MISSING = "the web app needs Gradio: pip install 'tinct[serve]' (or: pip install gradio)"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

_CSS = """
.tinct-trial { display: flex; gap: 12px; justify-content: center; align-items: flex-start; }
.tinct-trial figure { flex: 1 1 0; max-width: 384px; margin: 0; text-align: center; }
.tinct-trial .frame { background: #808080; border-radius: 6px; overflow: hidden; }
.tinct-trial img { display: block; width: 100%; height: auto; visibility: hidden; }
.tinct-trial.showing img { visibility: visible; }
.tinct-trial figcaption { font-weight: 600; margin-top: 4px; }
.tinct-trial-note { text-align: center; opacity: 0.8; }
"""

# Shows a new trial's two photos together, once both are decoded, for data-ms milliseconds;
# afterwards gray frames of the same size remain. Run after every event that sends a trial.
_EXPOSE_JS = """
async () => {
  const find = () => document.querySelector('#study-trial .tinct-trial:not([data-exposed])');
  let box = null;
  for (let i = 0; i < 200 && !(box = find()); i++) await new Promise(r => setTimeout(r, 25));
  if (!box) return;
  box.dataset.exposed = '1';
  await Promise.all([...box.querySelectorAll('img')].map(im => im.decode().catch(() => null)));
  box.classList.add('showing');
  box.dataset.shownAt = String(Date.now());
  setTimeout(() => { box.classList.remove('showing'); box.classList.add('done'); }, Number(box.dataset.ms));
}
"""


def require_gradio():
    """Import Gradio, or raise ImportError with the one-line install hint."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry, no version check
    try:
        import gradio
    except ImportError:
        raise ImportError(GRADIO_MISSING) from None
    return gradio


def safe_stem(name: str, fallback: str = "photo") -> str:
    """A file-name stem made only of ``[A-Za-z0-9_-]`` (at most 60 characters) from an upload's name."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(str(name)).stem).strip("_-")[:60]
    return stem or fallback


@dataclass
class ServeConfig:
    """Settings of ``tinct serve`` (the command's flags)."""

    models: list[str] = field(default_factory=list)  # empty: every shipped colorizer, default first
    max_upload_mb: float = 25.0
    max_pixels: int = 50_000_000
    workers: int = 1
    queue_size: int = 200
    size: int | None = None
    device: str = "auto"
    preview_size: int = 1600  # long side of the page's previews; downloads keep the full size
    keep_results_s: float = 3600.0
    study_dir: str | None = None
    study_csv: str = "study.csv"
    exposure_s: float = 1.0
    trials: int = 20
    display_size: int = 384
    seed: int | None = None


def default_models() -> list[str]:
    """``default`` and every other shipped colorizer (not generative priors)."""
    names = [m["name"] for m in list_models() if get_method(m["method"]).is_colorizer and m["name"] != DEFAULT_MODEL]
    return ["default", *names]


class TinctApp:
    """The web app: loaded models, the temporary folder and the Gradio pages.

    ``build()`` makes the :class:`gradio.Blocks`; ``launch()`` serves it; ``close()`` stops the
    server and removes the temporary folder.
    """

    def __init__(self, config: ServeConfig):
        self.config = config
        if config.workers < 1 or config.queue_size < 1:
            raise ValueError("--workers and --queue-size must be at least 1")
        if config.max_upload_mb <= 0 or config.max_pixels <= 0:
            raise ValueError("--max-upload-mb and --max-pixels must be positive")
        if config.exposure_s <= 0 or config.trials < 1 or config.display_size < 32:
            raise ValueError("--exposure must be positive, --trials at least 1 and --display-size at least 32")
        names = config.models or default_models()
        self.colorizers: dict[str, Colorizer] = {}
        for name in names:
            if name not in self.colorizers:
                self.colorizers[name] = Colorizer(name, device=config.device, size=config.size)
        self.demo = None
        self.study = None
        self.recorder = None
        if config.study_dir:
            self.study = StudyPhotos(config.study_dir, self.colorizers, display_size=config.display_size,
                                     max_pixels=config.max_pixels)
            self.recorder = StudyRecorder(config.study_csv)
        self.root = Path(tempfile.mkdtemp(prefix="tinct-serve-")).resolve()  # last: nothing above can leak it
        self.jobs = self.root / "results"
        self.jobs.mkdir()
        self._rng = np.random.default_rng(config.seed)
        self._rng_lock = threading.Lock()

    # --- models and options -------------------------------------------------------------
    def methods(self) -> dict[str, tuple[InferenceOption, ...]]:
        """Method name -> its declared inference options, for the served models."""
        return {c.method.name: tuple(type(c.method).inference_options) for c in self.colorizers.values()}

    def option_default(self, method: str, opt: InferenceOption) -> Any:
        """The control's starting value: the model's own config value when it has one (cic's
        temperature, bigcolor's sigma), else the declared default."""
        for c in self.colorizers.values():
            if c.method.name == method and opt.type in ("float", "int"):
                value = getattr(c.method.config, opt.name, None)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    return value
        return opt.default

    def model_card(self, model: str) -> str:
        try:
            path, _card = resolve_model(model)
        except ValueError:
            path = Path(model)
        card = Path(path).with_suffix(".md")
        text = card.read_text(encoding="utf-8") if card.exists() else f"No model card for `{model}`."
        return text

    def model_summary(self, model: str) -> str:
        """One line from the model card: method, size, training data (the full card is below the page)."""
        info = self.colorizers[model].info
        card = info.get("card") or {}
        training = card.get("training") or {}
        parts = [f"method {info.get('method', '?')}"]
        if card.get("parameters"):
            parts.append(f"{card['parameters'] / 1e6:.1f} M parameters")
        if training.get("images"):
            parts.append(f"trained on {training['images']:,} images at {training.get('image_size', '?')} px")
        return ", ".join(parts) + "; model card at the bottom of the page"

    def model_label(self, model: str) -> str:
        c = self.colorizers[model]
        return f"{model} ({c.method.name}, working size {c.size})" if model != c.method.name else f"{model} (working size {c.size})"

    def _inside_root(self, path: str | os.PathLike) -> Path:
        """The resolved path of a file the request refers to, which must lie in this server's
        temporary folder (where Gradio stores uploads); anything else is refused."""
        resolved = Path(os.path.realpath(path))
        if not resolved.is_relative_to(self.root) or not resolved.is_file():
            raise ValueError("refused: not an upload of this page")
        return resolved

    def convert_option(self, opt: InferenceOption, value: Any) -> Any:
        """A control's value -> the Colorizer keyword's value (None: not given)."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if opt.type == "int":
            return int(round(float(value)))
        if opt.type == "float":
            return float(value)
        if opt.type == "image":
            return str(self._inside_root(value))
        return str(value).strip()

    def api_options(self, model: str, options_json: str | None) -> dict[str, Any]:
        """Options of an API request (a JSON object) checked against the model's declared options."""
        import json

        if model not in self.colorizers:
            raise ValueError(f"unknown model {model!r}; served: {', '.join(self.colorizers)}")
        try:
            given = json.loads(options_json or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"options: not JSON ({exc})") from None
        if not isinstance(given, dict):
            raise ValueError("options: expected a JSON object")
        declared = {o.name: o for o in type(self.colorizers[model].method).inference_options if o.type != "image"}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise ValueError(f"options not accepted by {model!r}: {', '.join(unknown)} "
                             f"(accepted: {', '.join(declared) or 'none'})")
        converted = {k: self.convert_option(declared[k], v) for k, v in given.items()}
        return {k: v for k, v in converted.items() if v is not None}

    def _sweep(self) -> None:
        """Remove result folders older than ``keep_results_s``."""
        cutoff = time.time() - self.config.keep_results_s
        for job in self.jobs.iterdir():
            try:
                if job.stat().st_mtime < cutoff:
                    shutil.rmtree(job, ignore_errors=True)
            except OSError:
                pass

    # --- colorize page --------------------------------------------------------------------
    def colorize_request(self, files: list[str] | None, pasted: str | None, model: str, options: dict[str, Any],
                         progress=None, page: bool = True) -> dict[str, Any]:
        """Colorize uploaded files (paths in this server's temporary folder) with ``model``.

        Returns ``{"results": [{"name", "input_preview", "output", "output_preview"}], "zip": path,
        "errors": [message, ...]}`` (previews and the ZIP only with ``page``); raises ValueError
        when nothing could be colorized."""
        if model not in self.colorizers:
            raise ValueError(f"unknown model {model!r}")
        uploads = [(p, Path(str(p)).name) for p in (files or [])]
        if pasted:
            uploads.append((pasted, "pasted.png"))
        if not uploads:
            raise ValueError("Upload one or more photos first (drag and drop them, or paste one).")
        colorizer = self.colorizers[model]
        variants = colorizer.variants(options)  # resolves class / reference; ValueError for bad options
        self._sweep()
        job = self.jobs / uuid.uuid4().hex
        job.mkdir()
        results, errors, used = [], [], set()
        total = len(uploads) * len(variants)
        done = 0
        for path, shown_name in uploads:
            stem = safe_stem(shown_name)
            while stem in used:
                stem = f"{stem}_{len(used)}"
            used.add(stem)
            try:
                loaded = read_image(self._inside_root(path), max_pixels=self.config.max_pixels)
            except ImageReadError as exc:
                errors.append(f"{shown_name}: {exc.reason}")
                done += len(variants)
                continue
            except ValueError as exc:
                errors.append(f"{shown_name}: {exc}")
                done += len(variants)
                continue
            input_preview = None
            if page:
                gray8 = Image.fromarray((np.clip(loaded.gray, 0, 1) * 255 + 0.5).astype(np.uint8), mode="L")
                input_preview = self._preview(gray8, job / f"{stem}_input_preview.png")
            for suffix, opts in variants:
                if progress is not None:
                    progress((done, total), desc=f"colorizing {shown_name}")
                try:
                    out = colorizer.colorize_loaded(loaded, **opts)
                except (ValueError, MemoryError, RuntimeError) as exc:
                    errors.append(f"{shown_name}: {exc.__class__.__name__}: {exc}")
                    done += 1
                    continue
                target = job / f"{stem}{suffix}.png"
                out.save(target, format="PNG")
                preview = self._preview(out, job / f"{stem}{suffix}_preview.png", source=target) if page else None
                results.append({"name": target.name, "input_preview": input_preview, "output": str(target),
                                "output_preview": preview})
                done += 1
        if not results:
            raise ValueError("; ".join(errors) or "nothing to colorize")
        archive = None
        if page:
            archive = job / "tinct_colorized.zip"
            with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:
                for r in results:
                    z.write(r["output"], arcname=r["name"])
        return {"results": results, "zip": str(archive) if archive else None, "errors": errors}

    def _preview(self, im: Image.Image, target: Path, source: Path | None = None) -> str:
        """A PNG of ``im`` at most ``preview_size`` on its long side (the source file itself when small)."""
        limit = self.config.preview_size
        if source is not None and max(im.size) <= limit:
            return str(source)
        small = im.copy()
        small.thumbnail((limit, limit), Image.LANCZOS)
        small.save(target, format="PNG")
        return str(target)

    # --- study page -------------------------------------------------------------------------
    def study_start(self) -> dict[str, Any]:
        """A new participant: id and trial plan."""
        with self._rng_lock:
            rng = np.random.default_rng(self._rng.integers(2**63))
        return {"participant": uuid.uuid4().hex[:12], "plan": self.study.plan(self.config.trials, rng),
                "trial": 0, "correct": 0, "answered": 0, "current": None, "rng": rng}

    def study_next(self, state: dict[str, Any]) -> str | None:
        """Prepare the next trial of ``state`` (the participant's); returns its HTML, or None when done."""
        while state["trial"] < len(state["plan"]):
            photo, model = state["plan"][state["trial"]]
            state["trial"] += 1
            try:
                images = self.study.pair(photo, model)
            except ValueError as exc:
                log.warning("study: %s", exc)
                continue
            real_side = "left" if state["rng"].random() < 0.5 else "right"
            state["current"] = {"photo": photo, "model": model, "real_side": real_side, "shown_at": time.monotonic(),
                                "id": uuid.uuid4().hex[:8]}
            left, right = (images.real, images.fake) if real_side == "left" else (images.fake, images.real)
            return self.trial_html(left, right, images.mime, state["current"]["id"])
        state["current"] = None
        return None

    def trial_html(self, left: bytes, right: bytes, mime: str, trial_id: str) -> str:
        ms = round(self.config.exposure_s * 1000)
        figures = []
        for side, data in (("Left", left), ("Right", right)):
            with Image.open(_bytes_io.BytesIO(data)) as im:
                w, h = im.size
            src = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
            figures.append(f'<figure><div class="frame" style="aspect-ratio: {w} / {h}"><img alt="{side} photo" '
                           f'src="{src}" width="{w}" height="{h}"></div><figcaption>{side}</figcaption></figure>')
        return (f'<div class="tinct-trial" data-trial="{html.escape(trial_id)}" data-ms="{ms}">{"".join(figures)}</div>'
                f'<p class="tinct-trial-note">Which one is the real photo?</p>')

    def study_answer(self, state: dict[str, Any], choice: str) -> dict[str, Any]:
        """Record ``choice`` ('left' or 'right') for the current trial; returns the CSV row."""
        current = state.get("current") if state else None
        if not current:
            raise ValueError("no trial is showing; press Start")
        row = self.recorder.record(
            state["participant"], state["trial"], current["photo"], current["model"], current["real_side"], choice,
            (time.monotonic() - current["shown_at"]) * 1000, self.config.exposure_s * 1000,
        )
        state["answered"] += 1
        state["correct"] += int(not row["fooled"])
        state["current"] = None
        return row

    # --- Gradio -------------------------------------------------------------------------------
    def build(self):
        """The Gradio app (pages Colorize and, with a study folder, Study)."""
        gr = require_gradio()
        os.environ["GRADIO_TEMP_DIR"] = str(self.root)  # uploads and Gradio's cache live in our folder
        with gr.Blocks(title="tinct", analytics_enabled=False, delete_cache=(600, int(self.config.keep_results_s))) as demo:
            self._build_colorize(gr)
        if self.study is not None:
            with demo.route("Study", "/study"):
                self._build_study(gr)
        demo.queue(default_concurrency_limit=self.config.workers, max_size=self.config.queue_size)
        self.demo = demo
        return demo

    def _option_component(self, gr, method: str, opt: InferenceOption):
        default = self.option_default(method, opt)
        label = opt.name.replace("_", " ")
        kw = {"label": label, "elem_id": f"opt-{method}-{opt.name}"}
        if opt.choices:
            return gr.Dropdown(choices=list(opt.choices), value=default, info=opt.help, **kw)
        if opt.type in ("float", "int"):
            is_int = opt.type == "int"
            step = opt.step or (1 if is_int else 0.01)
            if opt.min is not None and opt.max is not None and (not is_int or opt.max - opt.min <= 100):
                return gr.Slider(minimum=opt.min, maximum=opt.max, step=step, value=default, info=opt.help, **kw)
            return gr.Number(value=default, minimum=opt.min, maximum=opt.max, step=step, precision=0 if is_int else None,
                             info=opt.help, **kw)
        if opt.type == "class":
            return gr.Dropdown(choices=imagenet_class_names(), value=None, allow_custom_value=True, filterable=True,
                               info=opt.help, **kw)
        if opt.type == "image":
            return gr.Image(type="filepath", sources=["upload", "clipboard"], format="png", image_mode=None, height=160,
                            label=f"{label}: {opt.help}", elem_id=kw["elem_id"])
        return gr.Textbox(value=default or "", info=opt.help, **kw)

    def _build_colorize(self, gr) -> None:
        models = list(self.colorizers)
        methods = self.methods()
        first_method = self.colorizers[models[0]].method.name
        gr.Markdown("# tinct: colorize gray photos\nDrop one or many black-and-white photos, pick a model, press "
                    "**Colorize**. Nothing leaves this computer; results are removed when the server stops.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                files = gr.File(label="Photos (drag and drop one or many)", file_count="multiple", file_types=["image"],
                                elem_id="upload", height=140)
                pasted = gr.Image(label="…or paste one (Ctrl+V / the clipboard button)", sources=["clipboard", "upload"],
                                  type="filepath", format="png", image_mode=None, height=140, elem_id="paste")
                model = gr.Dropdown(choices=[(self.model_label(m), m) for m in models], value=models[0], label="Model",
                                    info=self.model_summary(models[0]), elem_id="model")
                groups, option_inputs = {}, []
                for method, options in methods.items():
                    if not options:
                        continue
                    with gr.Group(visible=method == first_method) as group:
                        for opt in options:
                            option_inputs.append((method, opt, self._option_component(gr, method, opt)))
                    groups[method] = group
                run = gr.Button("Colorize", variant="primary", elem_id="colorize")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=2, min_width=300):
                slider = gr.ImageSlider(label="Before / after (drag the handle)", type="filepath", elem_id="slider",
                                        buttons=["fullscreen"], max_height=520)
                gallery = gr.Gallery(label="All results (select one to compare it above)", columns=4, height="auto",
                                     elem_id="gallery", allow_preview=False)
                with gr.Row():
                    download_one = gr.DownloadButton("Download PNG", visible=False, elem_id="download-png")
                    download_all = gr.DownloadButton("Download all (ZIP)", visible=False, elem_id="download-zip")
        with gr.Accordion("Model card", open=False, elem_id="card-box"):
            card = gr.Markdown(self.model_card(models[0]), elem_id="model-card")
        results_state = gr.State([])
        group_list = list(groups.values())

        def on_model(name):
            method = self.colorizers[name].method.name
            return [gr.update(visible=m == method) for m in groups] + [self.model_card(name),
                                                                       gr.update(info=self.model_summary(name))]

        model.change(on_model, [model], [*group_list, card, model], queue=False, api_visibility="private")

        def on_colorize(data, progress=gr.Progress()):
            name = data[model]
            method = self.colorizers[name].method.name
            try:
                options = {}
                for m, opt, comp in option_inputs:
                    if m == method:
                        value = self.convert_option(opt, data[comp])
                        if value is not None:
                            options[opt.name] = value
                out = self.colorize_request(data[files], data[pasted], name, options, progress=progress)
            except (ValueError, KeyError) as exc:
                message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                raise gr.Error(str(message), duration=None) from None
            results = out["results"]
            first = results[0]
            note = f"Colorized {len(results)} image{'s' if len(results) != 1 else ''} with `{name}`."
            if out["errors"]:
                note += "\n\n**Not colorized:**\n" + "\n".join(f"- {html.escape(e)}" for e in out["errors"])
                gr.Warning("Some files were not colorized: " + "; ".join(out["errors"]))
            return (
                (first["input_preview"], first["output_preview"]),
                [(r["output_preview"], r["name"]) for r in results],
                gr.update(value=first["output"], label=f"Download {first['name']}", visible=True),
                gr.update(value=out["zip"], visible=True),
                note,
                results,
            )

        inputs = {files, pasted, model, *(c for _m, _o, c in option_inputs)}
        run.click(on_colorize, inputs, [slider, gallery, download_one, download_all, status, results_state],
                  api_name="colorize_page", api_visibility="undocumented", concurrency_limit=self.config.workers,
                  concurrency_id="models", show_progress="full")

        def on_select(results, evt):
            r = results[evt.index]
            return (r["input_preview"], r["output_preview"]), gr.update(value=r["output"], label=f"Download {r['name']}")

        on_select.__annotations__["evt"] = gr.SelectData  # (this module's annotations are strings; Gradio needs the type)

        gallery.select(on_select, [results_state], [slider, download_one], api_visibility="private")

        # The client API (gradio_client or HTTP): one image file in, every output PNG out.
        with gr.Group(visible=False):
            api_file = gr.File(label="image", file_types=["image"])
            api_model = gr.Textbox(label="model", value=models[0])
            api_options = gr.Textbox(label="options", value="{}")
            api_out = gr.File(label="outputs", file_count="multiple")
            api_trigger = gr.Button()

        def on_api(image, name, options_json):
            try:
                out = self.colorize_request([image] if image else [], None, name, self.api_options(name, options_json),
                                           page=False)
            except (ValueError, KeyError) as exc:
                raise gr.Error(str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)) from None
            return [r["output"] for r in out["results"]]

        api_trigger.click(on_api, [api_file, api_model, api_options], [api_out], api_name="colorize",
                          concurrency_limit=self.config.workers, concurrency_id="models")

    def _build_study(self, gr) -> None:
        gr.Markdown(
            "# Real or colorized?\n"
            f"Each trial shows two photos side by side for **{self.config.exposure_s:g} s**. One is a real color "
            "photograph; the other was colorized by a computer from the same photo in black and white. "
            "Click the one you think is **real**. Go with your first impression.\n\n"
            "Your answers are stored with a random participant number, nothing else."
        )
        state = gr.State(None)
        start = gr.Button("Start", variant="primary", elem_id="study-start")
        trial = gr.HTML("", elem_id="study-trial", js_on_load=None, min_height=120)
        with gr.Row():
            left = gr.Button("Left is real", interactive=False, elem_id="study-left")
            right = gr.Button("Right is real", interactive=False, elem_id="study-right")
        info = gr.Markdown(elem_id="study-info")

        def show(st):
            page = self.study_next(st)
            if page is None:
                n, correct = st["answered"], st["correct"]
                return ("", f"**Thank you, that's all.** You picked the real photo in {correct} of {n} trials.", st,
                        gr.update(interactive=False), gr.update(interactive=False), gr.update(visible=False))
            return (page, f"Trial {st['trial']} of {len(st['plan'])}", st, gr.update(interactive=True),
                    gr.update(interactive=True), gr.update(visible=False))

        def on_start():
            return show(self.study_start())

        def answer(choice):
            def fn(st):
                if not st or not st.get("current"):
                    raise gr.Error("No trial is showing; press Start.")
                self.study_answer(st, choice)
                return show(st)
            return fn

        outs = [trial, info, state, left, right, start]
        start.click(on_start, None, outs, concurrency_id="models", api_visibility="private").then(None, js=_EXPOSE_JS)
        left.click(answer("left"), [state], outs, concurrency_id="models", api_visibility="private").then(None, js=_EXPOSE_JS)
        right.click(answer("right"), [state], outs, concurrency_id="models", api_visibility="private").then(None, js=_EXPOSE_JS)

    # --- serving ----------------------------------------------------------------------------------
    def launch(self, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> str:
        """Serve on ``host:port``; with ``block`` until Ctrl-C. Returns the local URL."""
        if self.demo is None:
            self.build()
        gr = require_gradio()
        self.demo.launch(
            server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block, show_error=True,
            max_file_size=int(self.config.max_upload_mb * 1024 * 1024), ssr_mode=False, enable_monitoring=False,
            css=_CSS, theme=gr.themes.Default(), footer_links=["api"], allowed_paths=[], pwa=False,
        )
        return self.demo.local_url

    def close(self) -> None:
        """Stop the server and remove the temporary folder."""
        if self.demo is not None:
            try:
                self.demo.close()
            except Exception:  # noqa: BLE001 - closing a server that failed to start
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 7860) -> int:
    """Run the web app until Ctrl-C (the ``tinct serve`` command)."""
    require_gradio()
    if host not in LOOPBACK_HOSTS:
        log.warning("serving on %s: the page is reachable from other machines on this network", host)
    app = TinctApp(config)
    try:
        app.build()
        print(f"tinct serve: http://{'[' + host + ']' if ':' in host else host}:{port}"
              + ("  (study: /study, answers -> " + str(Path(config.study_csv).resolve()) + ")" if app.study else ""),
              file=sys.stderr)
        try:
            app.launch(host, port, block=True)
        except OSError as exc:  # port taken, address not on this machine
            raise ValueError(f"cannot serve on {host}:{port}: {exc}") from None
    finally:
        app.close()
    return 0
