"""Command line: a thin layer over the Python API.

    tinct colorize INPUT... -o OUT_DIR [--model NAME] [--size N] [--format png|jpg] [--force]
    tinct train METHOD --data SRC... --out RUN_DIR [--config FILE.yaml] [--set key=value ...]
    tinct export RUN_DIR --name NAME [--dest DIR] [--metrics FILE.json] [--pretrained-mix ALPHA]
    tinct eval --model NAME --data DIR [--size N] [--limit N] [--json] [--report DIR]
    tinct eval --pred DIR --gt DIR [--json] [--report DIR]
    tinct models [--json | --markdown | --readme README.md]
    tinct figure sheet IMAGE... -o SHEET.jpg [--models default,cic] [--height 256]
    tinct serve [--host 127.0.0.1] [--port 7860] [--models NAME,...] [--max-upload-mb 25] [--workers N] [--study DIR]
    tinct study report STUDY.csv [--json]

plus the commands and figure kinds methods declare (:class:`tinct.methods.MethodCommand`: cic's
``ab-histogram`` and ``figure temperature``, the prior's ``sample``), and one flag per inference
option the methods declare (:class:`tinct.methods.InferenceOption`) on ``colorize`` and ``eval``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Callable

import torch

from . import __version__
from .device import pick_device
from .data import cache_dir
from .evaluate import InceptionFeatures, evaluate_models, gray_of, load_ground_truth, pred_dir_model, say_pred_notes
from .figures import model_sheet
from .io import ImageReadError, write_image
from .methods import declared_options, method_commands, method_names
from .pipeline import Colorizer, colorize_files
from .report import format_table, json_ready, write_report
from .serve import ServeConfig, require_gradio, serve
from .study import format_report, study_report
from .train import RunOptions, TrainingStopped, resolve_config, train
from .weights import export_run, list_models, load_model, models_markdown, update_readme_table

log = logging.getLogger(__name__)

__all__ = ["main"]


def _add_colorize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("colorize", help="colorize images, folders or globs")
    p.add_argument("inputs", nargs="+", help="image files, folders (recursive) or globs")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--model", default="default", help="shipped model name or a .safetensors file (default: %(default)s)")
    p.add_argument("--size", type=int, default=None, help="working resolution: short side in pixels the model sees (default: the model's)")
    p.add_argument("--format", choices=["png", "jpg"], default="png", help="output format (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse images larger than this many pixels (default: 250 million)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default; 1 is fastest when other work shares the CPU)")
    _add_method_options(p)


_OPTION_TYPES = {"float": float, "int": int, "str": str, "class": str, "image": str}
_OPTION_METAVARS = {"class": "NAME|INDEX", "image": "COLOR_IMAGE"}
_OPTION_PREFIX = "option_"


def _add_method_options(p: argparse.ArgumentParser) -> None:
    """One flag per inference option the registered methods declare (:class:`tinct.methods.InferenceOption`:
    its type, default and help), so a new method's options need no change here."""
    g = p.add_argument_group("method options (generated from each method's declared options; used by the methods named)")
    for name, (opt, owners) in declared_options().items():
        default = "" if opt.default is None else f" (default {opt.default:g})" if isinstance(opt.default, float) else f" (default {opt.default})"
        g.add_argument("--" + name.replace("_", "-"), dest=_OPTION_PREFIX + name, type=_OPTION_TYPES[opt.type], default=None,
                       choices=list(opt.choices) or None, metavar=_OPTION_METAVARS.get(opt.type, name.upper()),
                       help=f"{', '.join(owners)}: {opt.help}{default}".replace("%", "%%"))


def method_options(args: argparse.Namespace) -> dict:
    """The method-specific inference options given on the command line."""
    return {k[len(_OPTION_PREFIX):]: v for k, v in vars(args).items() if k.startswith(_OPTION_PREFIX) and v is not None}


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a method on folders or tar shards")
    p.add_argument("method", help="method name (see `tinct models`)")
    p.add_argument("--data", nargs="+", default=[], help="training folders, shards or globs (with --resume: the run's own by default)")
    p.add_argument("--val-data", nargs="*", default=[], help="images for the sample grids (default: the first training images)")
    p.add_argument("--out", required=True, help="run directory (checkpoint, log, samples)")
    p.add_argument("--config", default=None, help="YAML file of config options")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override one config option (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--init-from", default=None, help="start from a trained checkpoint, run dir or .safetensors (fine-tuning)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2, help="data loader worker processes")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--sample-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--no-progress", action="store_true")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="turn a training run into a shippable .safetensors + model card")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--dest", default=None, help="folder to write to (default: the current folder)")
    p.add_argument("--force", action="store_true", help="overwrite existing files (and allow the package's own weights folder)")
    p.add_argument("--metrics", default=None, help="JSON from `tinct eval --json` to put in the model card")
    p.add_argument("--working-size", type=int, default=None, help="default working resolution stored with the model")
    p.add_argument("--notes", default="", help="free text for the model card")
    p.add_argument("--pretrained-mix", type=float, default=None, metavar="ALPHA",
                   help="weight-space ensemble (WiSE-FT): weights that start from a pretrained network become "
                        "ALPHA * trained + (1 - ALPHA) * pretrained (0 < ALPHA < 1)")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score models (or another tool's outputs) with the tinct protocol")
    p.add_argument("--model", action="append", default=[], help="model to colorize and score (repeatable)")
    p.add_argument("--data", default=None, help="ground-truth color images: folders, files, .tar/.tar.gz shards or globs")
    p.add_argument("--pred", default=None, help="folder of another tool's outputs, matched to --gt by file stem")
    p.add_argument("--gt", default=None, help="ground-truth folder for --pred")
    p.add_argument("--size", type=int, default=None, help="working resolution for --model")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="write report.md, metrics.json, per_image.csv, contact_sheet.png and plot.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--sheet-images", type=int, default=8, help="images on the report's contact sheet")
    p.add_argument("--inception-weights", default=None, metavar="FILE",
                   help="FID Inception-v3 weights (pytorch-fid layout, .pth or .safetensors): adds true FID; never downloaded")
    _add_method_options(p)


def _add_figure(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    p = sub.add_parser("figure", help="render figures: a contact sheet of models, and the methods' own figures")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    s = kinds.add_parser("sheet", help="contact sheet: one row per image, columns input | each of --models")
    s.add_argument("images", nargs="+", metavar="IMAGE", help="input images, one row each")
    s.add_argument("-o", "--out", required=True, help="output image (.png or .jpg)")
    s.add_argument("--models", default="default,cic", help="comma-separated models, one column each (default: %(default)s)")
    s.add_argument("--height", type=int, default=256, help="height of every cell in pixels (default: %(default)s)")
    s.add_argument("--size", type=int, default=None, help="working resolution")
    s.add_argument("--device", default="auto")
    s.add_argument("--force", action="store_true", help="overwrite an existing output")
    return kinds


def _add_method_commands(sub: argparse._SubParsersAction, figures: argparse._SubParsersAction) -> None:
    """The commands methods declare (:class:`tinct.methods.MethodCommand`), each a subcommand or a figure kind."""
    for cls, cmd in method_commands():
        p = (figures if cmd.figure else sub).add_parser(cmd.name, help=cmd.help, aliases=list(cmd.aliases))
        cmd.add_arguments(p)
        if cmd.model_default is not None:
            p.add_argument("--model", default=cmd.model_default or None, required=not cmd.model_default,
                           help=f"a {cls.name} model: shipped name, .safetensors or training run"
                                + (" (default: %(default)s)" if cmd.model_default else ""))
            p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
        p.set_defaults(method_command=(cls, cmd))


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="web page to colorize, compare and download (and a realism study with --study)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this computer only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    p.add_argument("--models", default=None, metavar="NAME,...",
                   help="comma-separated models to offer (default: every shipped colorizer, 'default' first)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload in MB (default: %(default)s)")
    p.add_argument("--max-pixels", type=int, default=50_000_000, help="largest image in pixels (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="requests colorized at once; the rest wait in the queue (default: %(default)s)")
    p.add_argument("--queue-size", type=int, default=200, help="most requests waiting in the queue (default: %(default)s)")
    p.add_argument("--size", type=int, default=None, help="working resolution (default: each model's)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    g = p.add_argument_group("realism study (page /study)")
    g.add_argument("--study", default=None, metavar="DIR", help="folder of real color photos: adds the study page")
    g.add_argument("--study-csv", default="study.csv", help="CSV the answers are appended to (default: %(default)s)")
    g.add_argument("--exposure", type=float, default=1.0, help="seconds each pair is shown (default: %(default)s, as in CIC)")
    g.add_argument("--trials", type=int, default=20, help="trials per participant (default: %(default)s)")
    g.add_argument("--display-size", type=int, default=384, help="long side of the study's photos in pixels (default: %(default)s)")
    g.add_argument("--seed", type=int, default=None, help="seed of the trial order (default: random)")


def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="realism study results (the answers of `tinct serve --study`)")
    p.add_argument("action", choices=["report"], help="report: per model, the fooling rate with its 95%% interval")
    p.add_argument("csv", metavar="STUDY.csv", help="the study's answers")
    p.add_argument("--json", action="store_true", help="print JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinct", description="Automatic image colorization.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"tinct {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_colorize(sub)
    _add_train(sub)
    _add_export(sub)
    _add_eval(sub)
    figures = _add_figure(sub)
    _add_serve(sub)
    _add_study(sub)
    _add_method_commands(sub, figures)
    p = sub.add_parser("models", help="list shipped models and trainable methods")
    p.add_argument("--json", action="store_true", help="card data as JSON")
    p.add_argument("--markdown", action="store_true", help="the README's model table, from the model cards' eval metrics")
    p.add_argument("--readme", default=None, metavar="FILE", help="replace the model table between the markers in FILE")
    parsers = {id(p): p for p in [*sub.choices.values(), *figures.choices.values()]}  # aliases share a parser
    for p in parsers.values():  # -v after the subcommand too (SUPPRESS: it never resets a -v given before it)
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    return parser


def _cmd_colorize(args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise ValueError(f"--threads must be 0 (default) or more, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    colorizer = Colorizer(args.model, device=args.device, size=args.size)

    signals = []

    def stop(signum, _frame):  # SIGTERM ends the batch like Ctrl-C: the file being written is removed
        signals.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        summary = colorize_files(
            colorizer, args.inputs, args.out, fmt=args.format, force=args.force,
            max_pixels=args.max_pixels, progress=not args.no_progress, **method_options(args),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    if summary.interrupted:
        print(f"interrupted: done {summary.done}, skipped {summary.skipped}, failed {summary.failed} "
              "(run the same command again to resume)")
        return 128 + (signals[0] if signals else signal.SIGINT)  # 130 for Ctrl-C, 143 for SIGTERM
    print(f"done {summary.done}, skipped {summary.skipped}, failed {summary.failed}")
    return 1 if summary.failed else 0


def _cmd_train(args: argparse.Namespace) -> int:
    if not args.data and not args.resume:
        raise ValueError("--data is required (only --resume can leave it out: the run's own data)")
    config = resolve_config(args.method, args.config, args.overrides)
    options = RunOptions(
        data=args.data, out=args.out, val_data=args.val_data, device=args.device, workers=args.workers,
        seed=args.seed, resume=args.resume, init_from=args.init_from, checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every, log_every=args.log_every, progress=not args.no_progress, threads=args.threads,
    )
    explicit = {item.split("=", 1)[0]: config[item.split("=", 1)[0]] for item in args.overrides}
    try:
        path = train(args.method, config, options, overrides_on_resume=explicit)
    except TrainingStopped as stopped:  # the checkpoint is saved (logged); a script still sees the run did not finish
        print(stopped.checkpoint)
        return 128 + stopped.signum
    print(path)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    metrics = None
    if args.metrics:
        with open(args.metrics, encoding="utf-8") as f:
            metrics = json.load(f)
    path = export_run(args.run, args.name, dest=args.dest, metrics=metrics, working_size=args.working_size, notes=args.notes,
                      pretrained_mix=args.pretrained_mix, force=args.force)
    print(path)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    """``tinct eval``: colorize and score ``--model``s on ``--data``, or score ``--pred`` against ``--gt``."""
    if args.pred or args.gt:
        if not (args.pred and args.gt):
            raise ValueError("--pred DIR needs --gt DIR (and the other way round)")
        data = args.gt
    elif args.model and args.data:
        data = args.data
    else:
        raise ValueError("tinct eval needs --model NAME --data DIR, or --pred DIR --gt DIR")
    samples, skipped, errors = load_ground_truth(data, args.limit)
    for e in errors:
        print(f"tinct: error: {e}", file=sys.stderr)
    device = str(pick_device(args.device))
    models: dict[str, Callable] = {}
    options = method_options(args)
    for name in args.model:
        colorizer = Colorizer(name, device=device, size=args.size)
        declared = {o.name for o in colorizer.method.inference_options}
        own = {k: v for k, v in options.items() if k in declared}  # each model takes the options its method has
        if options and not own:
            log.warning("%s: its method has none of the options %s; scored without them", name, ", ".join(options))
        label = "".join(f" {k}={v}" for k, v in own.items())
        _suffix, resolved = colorizer.variants(dict(own))[0]
        models[name + label] = lambda sample, c=colorizer, o=resolved: c.colorize_gray(gray_of(sample.gt), **o)
    pred_notes: dict[str, list[str]] = {}
    if args.pred:
        pred = pred_dir_model(args.pred, pred_notes)
        missing = [s.name for s in samples if s.name not in pred.stems]
        if missing:  # all of them said at once; every row is scored on the images that have a prediction
            shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
            errors.append(f"{args.pred}: no prediction for {len(missing)} of {len(samples)} ground-truth images "
                          f"({shown}); scoring the {len(samples) - len(missing)} that have one")
            print(f"tinct: error: {errors[-1]}", file=sys.stderr)
            samples = [s for s in samples if s.name in pred.stems]
            if not samples:
                raise ValueError(f"{args.pred}: no file matches a ground-truth image by name (stem)")
        models[Path(args.pred).name or "pred"] = pred
    sheet_images = args.sheet_images if args.report else 0
    inception = InceptionFeatures(args.inception_weights, device) if getattr(args, "inception_weights", None) else None
    measured = evaluate_models(models, samples, skipped, device=device, cache_dir=cache_dir(),
                               progress=not args.json and not getattr(args, "no_progress", False),
                               sheet_images=sheet_images, inception=inception)
    measured.command = "tinct " + " ".join(getattr(args, "argv", None) or sys.argv[1:])
    result = measured.to_dict()
    say_pred_notes(args.pred, pred_notes)
    if args.report:
        write_report(result, args.report)
    if args.json:
        print(json.dumps(json_ready(result), indent=2))
    else:
        print(format_table(result))
        print(f"n = {result['n']}, skipped gray = {skipped}; seconds per model: " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))
    return 1 if errors else 0


def _cmd_models(args: argparse.Namespace) -> int:
    models = list_models()
    if args.readme:
        update_readme_table(args.readme, models_markdown(models))
        print(f"updated the model table in {args.readme}")
        return 0
    if args.markdown:
        print(models_markdown(models))
        return 0
    if args.json:
        print(json.dumps({"models": models, "methods": method_names()}, indent=2))
        return 0
    for m in models:
        print(f"{m['name']:<12} {m['method']:<10} {m['parameters'] / 1e6:.1f}M params  working size {m['working_size']}")
    print("trainable methods:", ", ".join(method_names()))
    return 0


def _cmd_figure(args: argparse.Namespace) -> int:
    if Path(args.out).exists() and not args.force:  # before the colorizing, not after
        raise FileExistsError(f"{args.out}: exists (use --force to overwrite)")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    sheet = model_sheet(args.images, models, height=args.height, size=args.size, device=args.device)
    write_image(sheet, args.out, force=args.force, quality=85)
    print(args.out)
    return 0


def _cmd_method(args: argparse.Namespace) -> int:
    """Run a command a method declared, with its model loaded and checked to be of that method."""
    cls, cmd = args.method_command
    used = args.kind if cmd.figure else args.command
    spelled = f"tinct {'figure ' if cmd.figure else ''}{used}"
    if used in cmd.aliases:
        log.warning("`%s` is deprecated and will be removed in the next release; use `tinct %s%s`",
                    spelled, "figure " if cmd.figure else "", cmd.name)
    model = None
    if cmd.model_default is not None:
        if cls.is_colorizer:
            model = Colorizer(args.model, device=args.device, size=getattr(args, "size", None))
            kind = model.info["method"]
        else:
            model, info = load_model(args.model, pick_device(args.device))
            kind = info["method"]
        if kind != cls.name:
            raise ValueError(f"model {args.model!r} is a {kind!r} model; `{spelled}` needs a {cls.name} model")
    return cmd.run(args, model)


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        require_gradio()
    except ImportError as exc:
        print(f"tinct serve: error: {exc}", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else []
    config = ServeConfig(
        models=models, max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels, workers=args.workers,
        queue_size=args.queue_size, size=args.size, device=args.device, study_dir=args.study, study_csv=args.study_csv,
        exposure_s=args.exposure, trials=args.trials, display_size=args.display_size, seed=args.seed,
    )
    return serve(config, host=args.host, port=args.port)


def _cmd_study(args: argparse.Namespace) -> int:
    print(format_report(study_report(args.csv), as_json=args.json))
    return 0


COMMANDS = {"colorize": _cmd_colorize, "train": _cmd_train, "export": _cmd_export, "eval": _cmd_eval, "models": _cmd_models,
            "figure": _cmd_figure, "serve": _cmd_serve, "study": _cmd_study}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded with eval results
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        code = _cmd_method(args) if hasattr(args, "method_command") else COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, ImageReadError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"tinct {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a batch (loading a model, scoring): one line, no traceback
        print(f"tinct {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tinct models | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
