"""The training loop: a step, resume, signals, sample grids, CSV log, export, fine-tuning, DDP."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import TINY_UNET
from tinct.cli import main
from tinct.methods import build_method, config_from_dict, get_method
from tinct.train import _init_from, load_checkpoint, resolve_config


def tiny_overrides(**extra):
    values = {**TINY_UNET, **extra}
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def run_train(shard, out, *extra):
    args = ["train", "unet_gan", "--data", str(shard), "--out", str(out), "--workers", "0", "--no-progress",
            "--sample-every", "2", "--checkpoint-every", "2", "--log-every", "1"]
    for o in tiny_overrides():
        args += ["--set", o]
    return main(args + list(extra))


def training_batch(shard, n=4):
    """The first ``n`` 32 px training examples of ``shard`` as one batch."""
    from tinct.data import ColorizationDataset, DataConfig

    ds = ColorizationDataset([str(shard)], DataConfig(image_size=32))
    return {k: torch.stack([ds[i][k] for i in range(n)]) for k in ("rgb", "gray", "label")}


def test_train_step_updates_both_networks(shard):
    torch.manual_seed(0)
    method = build_method("unet_gan", {**TINY_UNET, "pretrain_steps": 0}, pretrained=False)
    batch = training_batch(shard)
    opts = method.make_optimizers()
    g0 = [p.clone() for p in method.generator.parameters()]
    d0 = [p.clone() for p in method.discriminator.parameters()]
    import contextlib

    losses = method.train_step(batch, opts, step=0, autocast=contextlib.nullcontext)
    assert set(losses) == {"g", "l1", "g_adv", "d"} and all(map(lambda v: v == v, losses.values()))
    assert losses["g"] == pytest.approx(100 * losses["l1"] + losses["g_adv"], rel=1e-4)
    assert any(not torch.equal(a, b) for a, b in zip(g0, method.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, method.discriminator.parameters()))


def test_pretrain_stage_is_l1_only(shard):
    import contextlib

    method = build_method("unet_gan", {**TINY_UNET, "pretrain_steps": 5}, pretrained=False)
    batch = training_batch(shard)
    d0 = [p.clone() for p in method.discriminator.parameters()]
    losses = method.train_step(batch, method.make_optimizers(), step=0, autocast=contextlib.nullcontext)
    assert set(losses) == {"g", "l1"}
    assert all(torch.equal(a, b) for a, b in zip(d0, method.discriminator.parameters()))


def test_run_resume_log_samples_and_export(shard, tmp_path):
    out = tmp_path / "run"
    assert run_train(shard, out) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == 4 and ckpt["config"]["image_size"] == 32 and ckpt["method"] == "unet_gan"
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert rows[0]["d"] == "" and rows[-1]["d"] != ""  # GAN losses appear after pre-training
    assert float(rows[-1]["images_per_s"]) > 0
    assert (out / "samples" / "step_0000004.png").exists()
    # an existing run is never silently overwritten
    assert run_train(shard, out) == 2
    # resume and extend; rows logged after the checkpoint by a killed run are dropped, not duplicated
    with open(out / "log.csv", "a") as f:
        f.write("5,0,1.0,9,9,9,9\n")
    assert run_train(shard, out, "--resume", "--set", "steps=6") == 0
    assert load_checkpoint(out)["step"] == 6
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6] and rows[4]["l1"] != "9"
    # export: fp16 safetensors + card, loadable by the pipeline
    dest = tmp_path / "weights"
    assert main(["export", str(out), "--name", "mini", "--dest", str(dest)]) == 0
    card = json.loads((dest / "mini.json").read_text())
    assert card["training"]["steps"] == 6 and len(card["sha256"]) == 64
    assert (dest / "mini.md").read_text().startswith("# Model card")
    from tinct.pipeline import Colorizer

    c = Colorizer(str(dest / "mini.safetensors"), device="cpu")
    assert c.size == 32
    # weight-space ensemble with the pretrained encoder (WiSE-FT): encoder mixed, decoder as trained
    from tinct.methods import build_method
    from tinct.weights import load_inference_state

    assert main(["export", str(out), "--name", "mixed", "--dest", str(dest), "--pretrained-mix", "0.25"]) == 0
    trained, _ = load_inference_state(str(dest / "mini.safetensors"))
    mixed, info = load_inference_state(str(dest / "mixed.safetensors"))
    imagenet = build_method("unet_gan", info["config"], pretrained=False).pretrained_weights()
    key = "encoder._conv_stem.weight"
    torch.testing.assert_close(mixed[key], 0.25 * trained[key] + 0.75 * imagenet[key].float(), atol=2e-3, rtol=1e-2)
    assert not torch.allclose(mixed[key], trained[key])
    torch.testing.assert_close(mixed["head.weight"], trained["head.weight"])
    assert json.loads((dest / "mixed.json").read_text())["pretrained_mix"] == 0.25
    assert "WiSE-FT" in (dest / "mixed.md").read_text()
    assert main(["export", str(out), "--name", "bad", "--dest", str(dest), "--pretrained-mix", "1.5"]) == 2
    assert not (dest / "bad.safetensors").exists()
    # fine-tune from the exported model on "new" data
    ft = tmp_path / "finetune"
    assert run_train(shard, ft, "--init-from", str(dest / "mini.safetensors"), "--set", "steps=2") == 0


def test_yaml_config_and_bad_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("l1_weight: 50\nbatch_size: 8\n")
    values = resolve_config("unet_gan", str(cfg), ["batch_size=16"])
    assert values["l1_weight"] == 50 and values["batch_size"] == 16
    with pytest.raises(ValueError, match="no option"):
        resolve_config("unet_gan", None, ["not_an_option=1"])


def test_overrides_take_the_option_type():
    # YAML reads "1e-4" as a string; the optimizer must still get a float
    cfg = config_from_dict(get_method("unet_gan").config_class, resolve_config("unet_gan", None, ["lr=1e-4", "steps=2e3", "perceptual_weight=20"]))
    assert cfg.lr == pytest.approx(1e-4) and isinstance(cfg.lr, float)
    assert cfg.steps == 2000 and isinstance(cfg.steps, int)
    assert isinstance(cfg.perceptual_weight, float)
    for bad, reason in [("lr=fast", "expected float"), ("steps=2.5", "expected an integer"), ("freeze_encoder=maybe", "true or false")]:
        with pytest.raises(ValueError, match=reason):
            config_from_dict(get_method("unet_gan").config_class, resolve_config("unet_gan", None, [bad]))


def test_init_from_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    bogus = tmp_path / "weights.pt"
    torch.save({"state": {}}, bogus)
    with pytest.raises(ValueError, match="not a tinct training checkpoint"):
        _init_from(build_method("unet_gan", TINY_UNET, pretrained=False), str(bogus))


def _env():
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(__file__)), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_saves_checkpoint_and_exits_cleanly(shard, tmp_path, sig):
    # the signal goes to the whole process group (as Ctrl-C in a terminal), data workers included
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinct", "train", "unet_gan", "--data", str(shard), "--out", str(out), "--workers", "1",
           "--no-progress", "--log-every", "1", "--checkpoint-every", "100000", "--sample-every", "100000"]
    for o in tiny_overrides(steps=100000):
        cmd += ["--set", o]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    log = out / "log.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err  # saved, and a script still sees that the run did not finish (was 0)
    step = load_checkpoint(out)["step"]
    assert 2 <= step < 100000
    assert "stopped by signal" in err


def test_ddp_two_cpu_processes(shard, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", "-m", "tinct",
           "train", "unet_gan", "--data", str(shard), "--out", str(out), "--workers", "0", "--no-progress", "--device", "cpu"]
    for o in tiny_overrides(steps=3, batch_size=4):
        cmd += ["--set", o]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == 3
    # both ranks stepped in lockstep: DDP keeps generator weights identical, rank 0 saved them
    assert "generator.head.weight" in ckpt["model"]


def test_frozen_encoder_keeps_imagenet_weights_and_statistics(shard):
    import contextlib

    torch.manual_seed(0)
    method = build_method("unet_gan", {**TINY_UNET, "pretrain_steps": 0, "freeze_encoder": True}, pretrained=False)
    method.train()
    assert not method.generator.encoder.training and method.generator.up1.training
    before = {k: v.clone() for k, v in method.generator.encoder.state_dict().items()}
    decoder_before = method.generator.head.weight.clone()
    batch = training_batch(shard)
    method.train_step(batch, method.make_optimizers(), 0, contextlib.nullcontext)
    assert all(torch.equal(v, method.generator.encoder.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(decoder_before, method.generator.head.weight)


def test_ema_decay_warms_up_then_reaches_its_setting():
    from tinct.train import EMA

    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.999)
    start = ema.module.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net, step=0)  # decay 0.1: the average moves most of the way at once
    torch.testing.assert_close(ema.module.weight, start + 0.9)
    late = ema.module.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net, step=100_000)  # the configured 0.999
    torch.testing.assert_close(ema.module.weight, late + 0.001 * (net.weight - late))


def test_colorfulness_term_adds_to_the_generator_loss(shard):
    import contextlib

    torch.manual_seed(0)
    method = build_method("unet_gan", {**TINY_UNET, "pretrain_steps": 5, "colorfulness_weight": 30.0}, pretrained=False)
    batch = training_batch(shard)
    losses = method.train_step(batch, method.make_optimizers(), step=0, autocast=contextlib.nullcontext)
    assert set(losses) == {"g", "l1", "colorfulness"} and "colorfulness" in method.loss_names
    assert losses["colorfulness"] > 0
    assert losses["g"] == pytest.approx(100 * losses["l1"] + 30.0 * losses["colorfulness"], rel=1e-4)


def test_class_consistency_term_is_zero_on_the_ground_truth_and_trains_the_output_only(shard):
    import contextlib

    from tinct.nets.efficientnet import ImageClassifier
    from tinct.nets.perceptual import class_consistency_loss

    torch.manual_seed(0)
    classifier = ImageClassifier()
    target = torch.rand(2, 3, 32, 32)
    assert class_consistency_loss(classifier, target.clone(), target, 64).item() == pytest.approx(0.0, abs=1e-5)
    output = torch.rand(2, 3, 32, 32, requires_grad=True)
    kl = class_consistency_loss(classifier, output, target, 64)
    kl.backward()
    assert kl.item() > 0 and output.grad.abs().sum() > 0
    assert all(p.grad is None for p in classifier.parameters())

    method = build_method("unet_gan", {**TINY_UNET, "pretrain_steps": 5, "class_weight": 3.0, "class_view": 64}, pretrained=False)
    batch = training_batch(shard)
    losses = method.train_step(batch, method.make_optimizers(), step=0, autocast=contextlib.nullcontext)
    assert set(losses) == {"g", "l1", "class_kl"} and "class_kl" in method.loss_names
    assert losses["class_kl"] > 0
    assert losses["g"] == pytest.approx(100 * losses["l1"] + 3.0 * losses["class_kl"], rel=1e-4)


def test_semantic_view_fine_tune_starts_from_the_trained_outputs_and_learns_the_fusion(shard, tmp_path):
    """A model trained without the semantic branch loads into one with it (the new fusion layer
    starts at zero, so the outputs are unchanged), and a training step then updates the fusion."""
    import contextlib

    from tinct.train import _load_allowing_new_layers

    torch.manual_seed(0)
    plain = build_method("unet_gan", TINY_UNET, pretrained=False).eval()
    semantic = build_method("unet_gan", {**TINY_UNET, "semantic_view": 64}, pretrained=False).eval()
    _load_allowing_new_layers(semantic.generator, plain.generator.state_dict(), "plain")
    lightness = torch.rand(2, 1, 32, 32) * 100
    with torch.no_grad():
        torch.testing.assert_close(semantic.predict_ab(lightness), plain.predict_ab(lightness))
    with pytest.raises(ValueError, match="weights this model does not have"):
        _load_allowing_new_layers(plain.generator, semantic.generator.state_dict(), "semantic")
    with pytest.raises(ValueError, match="semantic"):
        semantic.generator(lightness)  # the fused generator needs the global features

    semantic.train()
    batch = training_batch(shard)
    frozen = semantic.frozen_network("classifier", None, torch.device("cpu"))
    before = [p.clone() for p in frozen.parameters()]
    for step in range(2):
        semantic.train_step(batch, semantic.make_optimizers(), step=step, autocast=contextlib.nullcontext)
    assert semantic.generator.fuse.weight.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(before, frozen.parameters()))  # the recognizer stays ImageNet's
    assert "semantic" not in " ".join(semantic.state_dict())  # and is not saved with the model


def test_export_never_clobbers_and_never_writes_into_the_package_by_default(shard, tmp_path, monkeypatch):
    from tinct.weights import weights_dir

    out = tmp_path / "run"
    assert run_train(shard, out) == 0
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in weights_dir().iterdir())
    assert main(["export", str(out), "--name", "unet_gan"]) == 0  # a shipped model's name: written here, not there
    assert sorted(p.name for p in weights_dir().iterdir()) == before
    written = tmp_path / "unet_gan.safetensors"
    assert written.exists() and (written.stat().st_mode & 0o777) == 0o644
    stamp = written.stat().st_mtime_ns
    assert main(["export", str(out), "--name", "unet_gan"]) == 2  # exists: refused
    assert written.stat().st_mtime_ns == stamp
    assert main(["export", str(out), "--name", "unet_gan", "--force"]) == 0
    assert main(["export", str(out), "--name", "brand_new", "--dest", str(weights_dir())]) == 2  # the package: refused
    assert not (weights_dir() / "brand_new.safetensors").exists()
    card = (tmp_path / "unet_gan.md").read_text()
    assert f"Data: {shard.parent.name}/{shard.name}" in card
