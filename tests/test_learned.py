"""The learned decoder: its weights, its texture code, its stream, its training script."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from streamcodec.bitstream import PacketType, VersionMismatch
from streamcodec.config import DecoderConfig
from streamcodec.decoder.learned import (ASSET, LearnedModel, LearnedSynthesizer, ModelMismatch, full_arch, grow_into,
                                         load_model, model_id_of, record_of, save_model)
from streamcodec.entropy import EntropyError
from streamcodec.texture.learned import join_payload, split_payload, unpack_strings

from .conftest import FACES, ROOT, TALKING


@pytest.fixture(scope="module")
def model() -> LearnedModel:
    return load_model(ASSET)


def test_code_round_trip_is_exact_and_small(model):
    torch.manual_seed(0)
    for scale in (0.3, 2.0, 30.0):  # 30: far outside the trained range, coded through the escape path
        y = torch.randn(1, model.arch["code_ch"], 9) * scale
        payload = model.compress_codes(y)
        assert torch.equal(model.decompress_codes(payload), model.entropy(y)[0])
    # cheaper than 4 bits per coded value, headers included
    assert len(model.compress_codes(torch.zeros(1, model.arch["code_ch"], 9))) < 9 * model.arch["code_ch"] // 2


def test_training_hands_the_generator_rounded_or_noisy_codes():
    m = LearnedModel().entropy.train()
    torch.manual_seed(0)
    y = torch.randn(4, 16, 9, requires_grad=True) * 0.2
    rounded, _ = m(y)
    m.noisy_codes = True
    noisy, _ = m(y)
    # Noise moves every code by up to half a step, and both modes pass the gradient to the encoder.
    assert not torch.allclose(rounded, noisy)
    assert (noisy - y).abs().max() <= 0.5 + 1e-6 and (noisy - y).abs().mean() > 0.1
    assert torch.autograd.grad(noisy.sum(), y)[0].abs().min() > 0
    assert torch.autograd.grad(rounded.sum(), y)[0].abs().min() > 0


def test_damaged_code_is_refused(model):
    payload = model.compress_codes(torch.randn(1, model.arch["code_ch"], 9))
    with pytest.raises(EntropyError):
        unpack_strings(payload[:-3], 2)
    with pytest.raises(EntropyError):
        unpack_strings(payload + b"\x00", 2)
    with pytest.raises(EntropyError):
        split_payload(b"\x09abc")
    assert split_payload(join_payload(b"colour", b"code")) == (b"colour", b"code")


def test_weights_round_trip_and_refusals(tmp_path, model):
    path = tmp_path / "m.safetensors"
    save_model(model, path, {"note": "test"})
    again = load_model(path)
    x = [torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64), torch.randn(1, model.arch["code_ch"], 16, 16)]
    assert torch.equal(model.generator(*x), again.generator(*x))
    assert record_of(path) == {"note": "test"}
    other = tmp_path / "other.safetensors"
    save_model(LearnedModel(code_ch=8, width=8, blocks=1, groups=2), other)
    state = {k: v for k, v in load_model(other).state_dict().items()}
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items() if "generator" not in k}, str(tmp_path / "part.safetensors"),
              metadata={"arch": json.dumps({"code_ch": 8, "width": 8, "blocks": 1, "groups": 2, "enc_width": 32})})
    with pytest.raises(ModelMismatch, match="does not fit"):
        load_model(tmp_path / "part.safetensors")
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"x": 1}))  # a pickle is never unpickled
    with pytest.raises(ModelMismatch, match="not a safetensors file"):
        load_model(evil)


def test_shipped_weights_record_how_they_were_made():
    rec = record_of(ASSET)
    assert full_arch(rec["config"]["model"]) == load_model(ASSET).arch
    train = {p.stem for p in (FACES / "train").iterdir()}
    bench = {p.stem for p in (FACES / "bench").iterdir()}
    stages = 0
    while rec:  # this stage, then each stage it was initialised from
        assert "scripts/train.py" in rec["command"]
        used = {n.rsplit("_", 1)[0] for n in rec["split"]["train"] + rec["split"]["val"]}
        assert used and used <= train and not used & bench
        base = "decoded" if rec["config"].get("stage") == "restorer" else "warp"
        assert rec["final_val"]["val_lpips"] < rec["final_val"][f"val_lpips_{base}"]
        rec, stages = rec.get("initialised_from", {}).get("record", {}), stages + 1
    assert stages >= 1


@pytest.fixture(scope="module")
def learned_stream(tmp_path_factory, talking_frames, cfg):
    from streamcodec.files import encode_frames

    c = replace(cfg, texture=replace(cfg.texture, codec="learned"))
    out = tmp_path_factory.mktemp("learned") / "talk.scv"
    encode_frames(talking_frames[:30], out, c, progress=False)
    return out


def test_both_decoders_read_the_learned_stream(learned_stream, talking_frames):
    from streamcodec.files import decode_file
    from streamcodec.metrics import LPIPS

    contents, warp, errors = decode_file(learned_stream, decoder="warp")
    assert not errors and contents.header.texture_model_id == model_id_of(ASSET)
    assert any(p.type == PacketType.TEXTURE and len(split_payload(p.payload)[1]) > 4 for p in contents.packets)
    _, learned, errors = decode_file(learned_stream, decoder="learned")
    assert not errors and len(learned) == len(warp) == 30
    truth = np.stack(talking_frames[:30])
    lp = LPIPS("alex")
    a = lp(truth[1:], np.stack([f.image for f in warp[1:]])).mean()
    b = lp(truth[1:], np.stack([f.image for f in learned[1:]])).mean()
    assert b < a, (a, b)  # the generator must improve on the warp it starts from


@pytest.mark.parametrize("backend", ["onnx", "traced"])
def test_compiled_generator_decodes_what_the_eager_one_does(learned_stream, monkeypatch, backend):
    """The ONNX Runtime and the TorchScript generators are speed-ups only: the same frames to 1 LSB."""
    from streamcodec.files import decode_file

    monkeypatch.setattr(LearnedSynthesizer, "backend", backend)
    _, fast, _ = decode_file(learned_stream, decoder="learned")
    monkeypatch.setattr(LearnedSynthesizer, "backend", "eager")
    _, eager, _ = decode_file(learned_stream, decoder="learned")
    a, b = (np.stack([f.image for f in x]).astype(int) for x in (fast, eager))
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3


def test_unknown_or_missing_generator_backend_is_a_clear_error(monkeypatch):
    from streamcodec.decoder import runtime

    with pytest.raises(ValueError, match="available"):
        runtime.resolve("tensorrt")
    monkeypatch.setattr(runtime, "available", lambda: ["traced", "eager"])  # onnxruntime not installed
    assert runtime.resolve("auto") == "traced"
    with pytest.raises(ValueError, match="not available"):
        runtime.resolve("onnx")


def test_decoder_with_other_weights_refuses_the_stream(learned_stream, tmp_path):
    from streamcodec.files import decode_file

    other = tmp_path / "other.safetensors"
    save_model(LearnedModel(code_ch=8, width=8, blocks=1, groups=2), other)
    with pytest.raises(VersionMismatch, match="learned texture model"):
        decode_file(learned_stream, decoder=DecoderConfig(name="learned", weights=str(other)))


def test_learned_static_background_is_the_warps(learned_stream):
    """`background: key` for the learned decoder: the generator's frame on the person, the warp's
    (the key frame's still background) away from it."""
    from streamcodec.files import read_scv
    from streamcodec.session import SessionDecoder

    contents = read_scv(learned_stream)
    dec = SessionDecoder(contents.header, decoder=DecoderConfig(name="learned", background="key"))
    plain = SessionDecoder(contents.header, decoder="learned")
    checked = 0
    for p in contents.packets:
        out, ref = dec.decode(p), plain.decode(p)
        if not out or p.frame == 0:
            continue
        w = dec.synth.warp.background[..., 0]
        warp = dec.synth.warp.synthesize(out[0].landmarks, dec._texture)
        bg, person = w > 0.9999, w < 1e-4
        assert np.abs(out[0].image[bg].astype(int) - warp[bg]).max() <= 1
        # the generator reads the composited warp, so its receptive field carries a trace of it in
        diff = np.abs(out[0].image[person].astype(int) - ref[0].image[person])
        assert diff.max() <= 3 and diff.mean() < 0.1
        checked += 1
    assert checked >= 20


def test_cli_decodes_with_the_weights_it_is_given(learned_stream, tmp_path):
    """`streamcodec decode --weights`: the stream's own weights decode, other weights are refused
    with the model ids, before any frame is written."""
    from .test_cli_and_bad_input import run

    other = tmp_path / "other.safetensors"
    save_model(LearnedModel(code_ch=8, width=8, blocks=1, groups=2), other)
    res = run("decode", str(learned_stream), "-o", str(tmp_path / "a.mkv"), "--decoder", "learned",
              "--weights", str(ASSET), "--background", "key")
    assert "30 frames" in res.stdout
    res = run("decode", str(learned_stream), "-o", str(tmp_path / "b.mkv"), "--decoder", "learned",
              "--weights", str(other), check=False)
    assert res.returncode != 0 and model_id_of(other).hex() in res.stderr and not (tmp_path / "b.mkv").exists()


def test_learned_decoder_reads_v1_streams(encoded):
    from streamcodec.files import decode_file

    path, res = encoded
    _, frames, errors = decode_file(path, decoder="learned")
    assert not errors and len(frames) == res.frames


def test_encoder_side_refinement_never_worsens_the_key_frame(talking_frames, cfg):
    """Refinement keeps the best quantised code it visits: on the key frame its objective (the
    training objective, distortion + lambda x bits) is never above the plain code's."""
    from streamcodec.decoder.generator import region_stack, render_sketch, spread
    from streamcodec.decoder.learned import _lpips, encode_code, refine_code, to_tensor
    from streamcodec.keyframe import encode_to_budget, get_codec
    from streamcodec.session import get_backend_layout
    from streamcodec.structure.landmarks import get_backend

    m = load_model(ASSET)
    img = talking_frames[0]
    lm = get_backend(cfg.backend).detect(img).points[:, :2]
    layout = get_backend_layout(cfg.backend)
    still = get_codec("av1", 8)
    key = still.decode(encode_to_budget(still, img, 1500, None)[0])
    masks = torch.from_numpy(region_stack(lm, layout, None, 256))[None]
    sketch = torch.from_numpy(render_sketch(lm, layout, 256))[None]

    def objective(code: torch.Tensor) -> float:
        with torch.no_grad():
            y_hat, bits = m.entropy(code)
            out = m.generator(to_tensor(key), sketch, spread(y_hat, masks))
            return float((out - to_tensor(img)).abs().mean() + _lpips()(out, to_tensor(img)).mean()
                         + m.lambda_rate * bits.mean())

    with torch.no_grad():
        y = m.encoder(to_tensor(img), masks)
    for lr in (0.3, 3.0):  # 3.0 jumps far across the quantiser's bins: most steps are worse
        y2 = refine_code(m, y, img, key, lm, layout, masks, steps=4, lr=lr)
        assert objective(y2) <= objective(y)
    assert m.decompress_codes(encode_code(m, img, lm, layout, None, key, 4, 0.3)).shape == y.shape


def test_training_two_processes_and_resume(tmp_path):
    """torchrun, 2 CPU processes (gloo) on pairs cached from a real train clip; then a resumed run."""
    clip = sorted((FACES / "train").glob("*.mp4"))[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(ROOT / "scripts/cache_pairs.py"), "--folder", str(clip.parent),
                    "--clips", "2", "--max-frames", "32", "--stride", "2", "--budgets", "1500",
                    "--out", str(tmp_path / "pairs")], check=True, env=env, capture_output=True, timeout=300)
    assert len(list((tmp_path / "pairs").glob("*.npz"))) == 2
    cfg = (ROOT / "configs/train_generator.yaml").read_text()
    cfg = cfg.replace("batch: 8", "batch: 2").replace("crop: 160", "crop: 64").replace("val_clips: 6", "val_clips: 1")
    cfg = cfg.replace("val_samples: 64", "val_samples: 8")
    (tmp_path / "cfg.yaml").write_text(cfg)
    common = ["scripts/train.py", "--config", str(tmp_path / "cfg.yaml"), "--data", str(tmp_path / "pairs"),
              "--out", str(tmp_path / "run")]
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                    *common, "--steps", "2"], check=True, env=env, cwd=ROOT, capture_output=True, timeout=300)
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["ranks_in_sync"]
    first = load_model(tmp_path / "run/final.safetensors")
    r = subprocess.run([sys.executable, *common, "--steps", "3"], check=True, env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert "resuming at step 2" in r.stdout
    assert json.loads((tmp_path / "run/state.json").read_text())["step"] == 3
    again = load_model(tmp_path / "run/final.safetensors")
    assert any(not torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters()))
    # a fine-tuning stage starts from those weights and keeps their record inside its own
    common[-1] = str(tmp_path / "stage2")
    subprocess.run([sys.executable, *common, "--steps", "1", "--init", str(tmp_path / "run/final.safetensors")],
                   check=True, env=env, cwd=ROOT, capture_output=True, timeout=300)
    rec = record_of(tmp_path / "stage2/final.safetensors")
    assert rec["initialised_from"]["model_id"] == model_id_of(tmp_path / "run/final.safetensors").hex()
    assert rec["initialised_from"]["record"]["steps_done"] == 3


def _script(name: str):
    """A script of scripts/ as a module (they are not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_script():
    return _script("train")


def _pack_script():
    return _script("pack_pairs")


def _grown_with_inputs(tmp_path: Path, switch: str):
    """The shipped weights less their displacement layer (the model to grow from), those grown by
    --init with `switch` on, and seeded 64x64 generator inputs: a warp of mid-grey images (the
    output's clamp to [-1, 1] never acts, so the residual can be read off), a sketch and a texture map."""
    base = _shipped_less(tmp_path, "flow")
    model = load_model(base)
    arch = {**model.arch, switch: 1}
    grown = LearnedModel(**arch)
    _train_script()._init_from(grown, base, arch)
    torch.manual_seed(1)
    warp, sketch = torch.rand(2, 3, 64, 64) * 0.4 - 0.2, torch.rand(2, 3, 64, 64)
    return model, grown, arch, (warp, sketch, torch.randn(2, model.arch["code_ch"], 16, 16))


def test_switching_ref_input_on_starts_from_the_old_output(tmp_path):
    """--init into a ref_input model: the added inputs and the blend map start at zero, so the new
    model draws the old one's frames; once the blend map opens, the unwarped key frame shows through."""
    model, grown, arch, (warp, sketch, texmap) = _grown_with_inputs(tmp_path, "ref_input")
    ref = torch.cat([torch.rand(2, 3, 64, 64) * 0.4 - 0.2, torch.ones(2, 1, 64, 64)], 1)
    with torch.no_grad():
        assert torch.equal(grown.generator(warp, sketch, texmap, ref), model.generator(warp, sketch, texmap))
        grown.generator.out.bias[12:] = 1.0  # blend map all ones, residual unchanged
        out = grown.generator(warp, sketch, texmap, ref)
        res = model.generator(warp, sketch, texmap) - warp
    assert (warp + res).abs().max() < 1 and (ref[:, :3] + res).abs().max() < 1  # the clamp did not act
    assert torch.allclose(out, ref[:, :3] + res, atol=1e-5)
    with pytest.raises(SystemExit):  # other changes of architecture are refused
        _train_script()._init_from(LearnedModel(**{**arch, "width": 8}), ASSET, {**arch, "width": 8})


def test_switching_flow_on_starts_from_the_old_output(tmp_path):
    """--init into a flow model: the displacement starts at zero, so the new model draws the old
    one's frames; a displacement moves the warp before the residual is added."""
    from streamcodec.decoder.generator import resample

    model, grown, _, (warp, sketch, texmap) = _grown_with_inputs(tmp_path, "flow")
    with torch.no_grad():
        assert torch.equal(grown.generator(warp, sketch, texmap), model.generator(warp, sketch, texmap))
        grown.generator.flow.bias[:] = torch.tensor([3.0, -2.0])  # every pixel takes the one 3 right, 2 up
        grown.generator.out.bias.zero_()  # no residual: the output is the moved warp
        grown.generator.out.weight.zero_()
        out = grown.generator(warp, sketch, texmap)
    assert torch.allclose(out[..., 2:, :-3], warp[..., :-2, 3:], atol=1e-5)
    assert torch.equal(resample(warp, torch.zeros(2, 2, 64, 64)), warp)
    save_model(grown, tmp_path / "flow.safetensors")
    with pytest.raises(SystemExit):  # weights with flow do not go back into a model without
        _train_script()._init_from(LearnedModel(**model.arch), tmp_path / "flow.safetensors", model.arch)


@pytest.mark.parametrize("switch", ["ref_input", "flow"])
def test_grown_model_codes_and_decodes_a_stream(switch, talking_frames, cfg, tmp_path, monkeypatch):
    """Weights whose generator also sees the unwarped key frame, or moves the warp: a stream coded
    with them (codes refined through that generator) decodes, compiled or eager alike."""
    from streamcodec.decoder import learned as L
    from streamcodec.files import decode_file, encode_frames

    torch.manual_seed(2)
    m = LearnedModel(**{**load_model(ASSET).arch, switch: 1})
    with torch.no_grad():
        for p in m.generator.out.parameters():
            p.normal_(0, 0.02)
        if switch == "flow":
            for p in m.generator.flow.parameters():
                p.normal_(0, 0.3)
    path = tmp_path / "ref.safetensors"
    save_model(m, path, {"note": "test"})
    stream = tmp_path / "ref.scv"
    dec = DecoderConfig(name="learned", weights=str(path))  # the config is all that names the weights
    c = replace(cfg, texture=replace(cfg.texture, codec="learned", refine_steps=2), decoder=dec)
    encode_frames(talking_frames[:12], stream, c, progress=False)
    _, fast, errors = decode_file(stream, decoder=dec)  # on the default runtime
    monkeypatch.setattr(L.LearnedSynthesizer, "backend", "eager")
    _, eager, _ = decode_file(stream, decoder=dec)
    assert not errors and len(fast) == len(eager) == 12
    a, b = (np.stack([f.image for f in x]).astype(int) for x in (fast, eager))
    assert np.abs(a - b).max() <= 1


def test_optimiser_state_survives_save_and_load(tmp_path):
    """Resuming restores Adam's moments exactly, not a fresh optimiser."""
    train = _train_script()
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    net(torch.randn(5, 4)).sum().backward()
    opt.step()
    train._save_optim(opt, tmp_path / "optim.safetensors")
    fresh = torch.optim.Adam(net.parameters(), 1e-3)
    train._load_optim(fresh, tmp_path / "optim.safetensors")
    a, b = opt.state_dict()["state"], fresh.state_dict()["state"]
    assert a.keys() == b.keys() and len(a) == 4
    for i in a:
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(a[i][k], b[i][k])


def test_validation_split_holds_out_whole_people(tmp_path):
    """`val_identities`: no held-out person has a clip on the training side, one clip each is validated."""
    train = _train_script()
    people = {f"p{k}": [f"src__p{k}_clip{c}" for c in range(1 + k % 3)] for k in range(12)}
    rows = ["split\tfile\tid"] + [f"train\t{stem}.mp4\t{p}" for p, stems in people.items() for stem in stems]
    (tmp_path / "catalogue.tsv").write_text("\n".join(rows) + "\n")
    files = sorted(tmp_path / f"{stem}_150.npz" for stems in people.values() for stem in stems)
    tr, val = train._split(files, {"val_identities": 4}, tmp_path / "catalogue.tsv")
    person = {f: f.stem.split("__")[1].split("_")[0] for f in files}
    held = {person[f] for f in val}
    assert len(val) == len(held) == 4
    assert not held & {person[f] for f in tr}
    assert set(tr) | set(val) <= set(files) and len(tr) == sum(person[f] not in held for f in files)
    assert train._split(files, {"val_identities": 4}, tmp_path / "catalogue.tsv") == (tr, val)  # deterministic
    with pytest.raises(SystemExit, match="not in"):
        train._split(files + [tmp_path / "stranger_150.npz"], {"val_identities": 4}, tmp_path / "catalogue.tsv")
    # the older rule: the last n clips by name
    assert train._split(files, {"val_clips": 2}) == (files[:-2], files[-2:])


def test_packed_pairs_decode_to_the_cached_ones(tmp_path, talking_frames):
    """scripts/pack_pairs.py: fewer frames, JPEG images and fixed-point landmarks, read back by the
    training script as the arrays the cache holds (to JPEG's and 1/64 pixel's precision)."""
    pack, train = _pack_script(), _train_script()
    img = talking_frames[0]
    lm = np.random.default_rng(0).uniform(60, 196, (478, 2)).astype(np.float32)
    n = 6
    d = {"target": np.stack([np.roll(img, 3 * k, 1) for k in range(n)]),
         "warp": np.stack([np.roll(img, 3 * k + 1, 1) for k in range(n)]),
         "landmarks": np.stack([lm + k for k in range(n)]), "key": np.arange(n) % 2,
         "key_images": np.stack([img, img[::-1]]), "key_originals": np.stack([img, img[:, ::-1]]),
         "key_person": np.ones((2, 256, 256), np.uint8), "key_landmarks": np.stack([lm, lm + 1]),
         "budget": np.array(3000)}
    np.savez_compressed(tmp_path / "clip_150.npz", **d)
    assert pack.pack_clip(tmp_path / "clip_150.npz", tmp_path / "packed.npz", frames=3, quality=90) == 3
    assert (tmp_path / "packed.npz").stat().st_size < (tmp_path / "clip_150.npz").stat().st_size / 2
    got = train.load_clip(tmp_path / "packed.npz")
    keep = [0, 2, 5]  # three frames spread evenly over six
    assert set(got) == set(d)
    for k in ("target", "warp"):
        assert got[k].shape == (3, 256, 256, 3) and got[k].dtype == np.uint8
        assert np.abs(got[k].astype(int) - d[k][keep]).mean() < 3
    for k in ("key_images", "key_originals"):
        assert np.abs(got[k].astype(int) - d[k]).mean() < 3
    np.testing.assert_allclose(got["landmarks"], d["landmarks"][keep], atol=1 / 64)
    np.testing.assert_allclose(got["key_landmarks"], d["key_landmarks"], atol=1 / 64)
    assert list(got["key"]) == [0, 0, 1] and (got["key_person"] == 1).all()


def test_face_layout_travels_as_json():
    """A pack carries its layout.json: the GPU machine has no mediapipe to build the layout from."""
    from streamcodec.session import get_backend_layout
    from streamcodec.structure.landmarks import layout_from_json, layout_to_json

    for name in ("mediapipe478", "dlib68"):
        layout = get_backend_layout(name)
        assert layout_from_json(layout_to_json(layout)) == layout


def test_batches_from_worker_processes_are_seeded(tmp_path, talking_frames):
    """--workers: batches built in DataLoader processes, the same for the same seed, other for another."""
    train = _train_script()
    img = talking_frames[0]
    lm = np.random.default_rng(0).uniform(80, 176, (478, 2)).astype(np.float32)
    np.savez_compressed(tmp_path / "clip_150.npz", target=np.stack([img] * 4), warp=np.stack([img[:, ::-1]] * 4),
                        landmarks=np.stack([lm] * 4), key=np.zeros(4, np.int64), key_images=img[None],
                        key_originals=img[None], key_person=np.ones((1, 256, 256), np.uint8),
                        key_landmarks=lm[None], budget=np.array(3000))
    from streamcodec.session import get_backend_layout

    pairs = train.Pairs([tmp_path / "clip_150.npz"], 64, 0.5, get_backend_layout("mediapipe478"))

    def first(seed, workers):
        return next(iter(train.batch_stream(pairs, 3, seed, workers)))

    a, b, c = first([0, 0, 0], 1), first([0, 0, 0], 1), first([1, 0, 0], 1)
    assert a["warp"].shape == (3, 3, 64, 64) and a["masks"].shape == (3, 9, 16, 16)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert first([0, 0, 0], 0)["target"].shape == (3, 3, 64, 64)


def test_mirrored_samples_flip_every_input_alike(tmp_path, talking_frames):
    """p_flip: a mirrored sample is the same draw (crop, key or predicted frame) with every image and
    mask flipped left-right, so the generator's inputs, its region masks and its target still line up;
    p_flip 0 draws the samples as before."""
    from streamcodec.session import get_backend_layout

    train = _train_script()
    img = talking_frames[0]
    lm = np.random.default_rng(1).uniform(80, 176, (478, 2)).astype(np.float32)
    person = (np.random.default_rng(2).random((256, 256)) < 0.7).astype(np.uint8)  # a flip shows in any crop of it
    np.savez_compressed(tmp_path / "clip_150.npz", target=np.stack([img] * 3), warp=np.stack([img[::-1]] * 3),
                        landmarks=np.stack([lm] * 3), key=np.zeros(3, np.int64), key_images=img[None],
                        key_originals=img[None, :, ::-1], key_person=person[None], key_landmarks=lm[None],
                        budget=np.array(3000))
    layout = get_backend_layout("mediapipe478")
    plain = train.Pairs([tmp_path / "clip_150.npz"], 64, 0.5, layout)
    flipping = train.Pairs([tmp_path / "clip_150.npz"], 64, 0.5, layout, p_flip=1.0)
    for seed in range(4):
        a = plain.item(seed % 3, np.random.default_rng(seed))
        b = flipping.item(seed % 3, np.random.default_rng(seed))
        assert set(a) == set(b)
        for k in ("warp", "target", "ref_orig", "ref_image"):  # (H, W, 3) images
            np.testing.assert_array_equal(b[k], a[k][:, ::-1])
        for k in ("sketch", "masks", "ref_masks", "ref_person"):  # (C, H, W) maps
            assert a[k].any() and not np.array_equal(a[k], a[k][..., ::-1])
            np.testing.assert_array_equal(b[k], a[k][..., ::-1])
        np.testing.assert_array_equal(train.mirrored(b)["masks"], a["masks"])
    batch = flipping.batch([0, 1], np.random.default_rng(0))  # flipped views are contiguous tensors
    assert batch["warp"].shape == (2, 3, 64, 64) and batch["masks"].shape == (2, 9, 16, 16)


def test_generator_speed_script_matches_the_cpu(tmp_path):
    """scripts/generator_speed.py (run on a GPU in scripts/gpu_burst.sh): here on the CPU, where its
    reference and its timed network are the same computation."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "scripts/generator_speed.py", "--frames", "4", "--runs", "1", "--out",
                    str(tmp_path / "speed.json")], check=True, env=env, cwd=ROOT, capture_output=True, timeout=300)
    res = json.loads((tmp_path / "speed.json").read_text())
    assert res["model_id"] == model_id_of(ASSET).hex()
    assert [r["batch"] for r in res["rows"]] == [1, 8]
    assert all(r["fps_median"] > 0 and r["max_diff_lsb_vs_cpu"] == 0 for r in res["rows"])


_PARTS = {"restorer": ({"restore_width": 0, "restore_blocks": 0}, "restorer."), "flow": ({"flow": 0}, "generator.flow.")}


def _shipped_less(tmp_path: Path, *parts: str) -> Path:
    """The shipped weights less parts they may have: their key-frame restorer, their displacement layer."""
    from streamcodec.decoder.learned import _derived

    shipped = load_model(ASSET)
    arch = {k: v for part in parts for k, v in _PARTS[part][0].items()}
    prefixes = tuple(_PARTS[part][1] for part in parts)
    m = LearnedModel(**{**shipped.arch, **arch})
    m.load_state_dict({k: v for k, v in shipped.state_dict().items()  # CDF tables: rebuilt on load
                       if not k.startswith(prefixes) and not _derived(k)}, strict=False)
    path = tmp_path / f"no_{'_'.join(parts)}.safetensors"
    save_model(m, path, {"note": "test"})
    return path


def _with_restorer(tmp_path: Path, seed: int = 3) -> Path:
    """The shipped weights with a small new key-frame restorer whose last layer is not zero (so it acts)."""
    base = _shipped_less(tmp_path, "restorer")
    arch = {**load_model(base).arch, "restore_width": 8, "restore_blocks": 2}
    torch.manual_seed(seed)  # the restorer's first layers are drawn here: the same whatever ran before
    m = LearnedModel(**arch)
    _train_script()._init_from(m, base, arch)
    with torch.no_grad():
        for p in m.restorer.tail.parameters():
            p.normal_(0, 0.05)
    path = tmp_path / "restorer.safetensors"
    save_model(m, path, {"note": "test"})
    return path


def test_added_restorer_starts_as_the_identity(tmp_path):
    from streamcodec.keyframe.restore import KeyRestorer

    base = _shipped_less(tmp_path, "restorer")
    arch = {**load_model(base).arch, "restore_width": 8, "restore_blocks": 2}
    grown = LearnedModel(**arch)
    _train_script()._init_from(grown, base, arch)
    img = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    assert np.array_equal(grown.restore_key(img, 1500), img)
    assert np.array_equal(load_model(base).restore_key(img, 1500), img)  # weights without a restorer
    assert np.array_equal(grown.restore_key(img, None), img)  # key frame size unknown: left as decoded
    r = KeyRestorer(8, 2)
    assert r.macs(256) > 0 and r(torch.zeros(1, 3, 64, 64), torch.tensor([0.2])).shape == (1, 3, 64, 64)


def test_decoder_shows_and_warps_the_restored_key_frame(talking_frames, cfg, tmp_path):
    """The receiver restores the key frame with the size it had in the stream; the frame it shows
    there and the warps after it start from the restored image, and the warp decoder is unaffected."""
    from streamcodec.files import decode_file, encode_frames

    path = _with_restorer(tmp_path)
    dec = DecoderConfig(name="learned", weights=str(path))
    stream = tmp_path / "r.scv"
    encode_frames(talking_frames[:8], stream, replace(cfg, texture=replace(cfg.texture, codec="learned"), decoder=dec),
                  progress=False)
    contents, frames, errors = decode_file(stream, decoder=dec)
    _, warp_frames, _ = decode_file(stream, decoder="warp")
    assert not errors
    key = next(p for p in contents.packets if p.type == PacketType.KEYFRAME)
    from streamcodec.keyframe import get_codec

    decoded = get_codec(key.payload[0]).decode(key.payload[1:])
    restored = load_model(path).restore_key(decoded, len(key.payload) - 1)
    assert not np.array_equal(restored, decoded)
    assert np.array_equal(frames[key.frame].image, restored)
    assert np.array_equal(warp_frames[key.frame].image, decoded)


def test_restorer_stage_trains_only_the_restorer(tmp_path):
    """configs/train_restorer.yaml on key frames cached from real train clips, from the shipped
    weights: the restorer changes, everything else stays the shipped model's."""
    folder = FACES / "train"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(ROOT / "scripts/cache_keys.py"), "--folder", str(folder), "--clips", "2",
                    "--max-frames", "16", "--per-clip", "3", "--out", str(tmp_path / "keys")],
                   check=True, env=env, capture_output=True, timeout=300)
    cached = sorted((tmp_path / "keys").glob("*.npz"))
    assert cached and all(np.load(f)["decoded"].shape[1:] == (256, 256, 3) for f in cached)
    cfg = (ROOT / "configs/train_restorer.yaml").read_text()
    cfg = cfg.replace("batch: 16", "batch: 2").replace("crop: 128", "crop: 64").replace("val_samples: 96",
                                                                                        "val_samples: 8")
    cfg = cfg.replace("restore_width: 48", "restore_width: 8").replace("val_identities: 16", "val_identities: 1")
    (tmp_path / "cfg.yaml").write_text(cfg)
    base = _shipped_less(tmp_path, "restorer", "flow")  # the architecture the config describes: stage 2's
    subprocess.run([sys.executable, "scripts/train.py", "--config", str(tmp_path / "cfg.yaml"), "--data",
                    str(tmp_path / "keys"), "--out", str(tmp_path / "run"), "--steps", "2", "--init", str(base)],
                   check=True, env=env, cwd=ROOT, capture_output=True, timeout=300)
    new, old = load_model(tmp_path / "run/final.safetensors"), load_model(base)
    assert new.arch["restore_width"] == 8
    assert any(p.abs().sum() > 0 for p in new.restorer.tail.parameters())
    for part in ("generator", "encoder", "entropy"):
        a, b = getattr(new, part).state_dict(), getattr(old, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in b), part
    assert record_of(tmp_path / "run/final.safetensors")["initialised_from"]["model_id"] == model_id_of(base).hex()


def test_pairs_cached_for_a_restorer_start_from_the_restored_key(tmp_path, talking_frames, cfg):
    """cache_pairs --weights decodes with that learned decoder: its key frames are the restored ones,
    the warps it keeps start from them, and the person masks come from the key frame as decoded."""
    from streamcodec.files import decode_file, encode_frames

    weights = _with_restorer(tmp_path)
    scv = tmp_path / "c.scv"
    encode_frames(talking_frames[:10], scv, cfg, progress=False)
    contents, plain, _ = decode_file(scv)
    _, frames, warps, decoded_keys = _script("cache_pairs")._decode_keeping_warps(scv, weights)
    key = next(p for p in contents.packets if p.type == PacketType.KEYFRAME)
    assert np.array_equal(decoded_keys[key.frame], plain[key.frame].image)
    restored = load_model(weights).restore_key(plain[key.frame].image, len(key.payload) - 1)
    assert np.array_equal(frames[key.frame].image, restored) and not np.array_equal(restored, plain[key.frame].image)
    later = [i for i in warps if i != key.frame and plain[i].landmarks is not None]
    assert len(later) >= 5
    # the same motion from another key image: the warps differ about as much as the two key images do
    key_diff = np.abs(restored.astype(int) - plain[key.frame].image).mean()
    for i in later:
        assert np.array_equal(frames[i].landmarks, plain[i].landmarks)
        diff = np.abs(warps[i].astype(int) - plain[i].image)
        assert 0.5 * key_diff < diff.mean() < 1.5 * key_diff, (diff.mean(), key_diff)


def test_averaged_weights_lie_between_their_parents(tmp_path):
    """scripts/average_weights.py: alpha 0 and 1 give back each parent's tensors, 0.5 their mean; the
    result loads as any weights do, records both parents, and other architectures are refused."""
    from safetensors.torch import load_file

    avg = _script("average_weights")
    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        m = LearnedModel(width=8, blocks=1, enc_width=8)
        for p in m.generator.out.parameters():  # zero at init: give the parents different output layers
            torch.nn.init.normal_(p, std=0.01)
        paths.append(tmp_path / f"p{seed}.safetensors")
        save_model(m, paths[-1], {"note": f"parent {seed}"})
    a, b = (load_file(str(p)) for p in paths)
    for alpha, want in ((0.0, a), (1.0, b), (0.5, {k: (a[k] + b[k]) / 2 for k in a})):
        out = tmp_path / f"mix{alpha}.safetensors"
        save_model(avg.average(paths[0], paths[1], alpha), out)
        got = load_file(str(out))
        assert set(got) == set(want)
        assert all(torch.allclose(got[k], want[k], atol=1e-6) for k in want)
        load_model(out)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "scripts/average_weights.py", *map(str, paths), "-o", str(tmp_path / "s.st")],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rec = record_of(tmp_path / "s.st")
    assert rec["note"] == "parent 2" and rec["averaged_with"]["model_id"] == model_id_of(paths[0]).hex()
    # a fine-tune that switched flow on: its parent counts with the zeros the new layer started from
    grown = LearnedModel(width=8, blocks=1, enc_width=8, flow=1)
    grow_into(grown, paths[1])
    torch.nn.init.normal_(grown.generator.flow.weight, std=0.01)
    save_model(grown, tmp_path / "flow.safetensors")
    mixed = avg.average(paths[0], tmp_path / "flow.safetensors", 0.25)
    assert torch.allclose(mixed.generator.flow.weight, 0.25 * grown.generator.flow.weight)
    assert torch.allclose(mixed.generator.out.weight, 0.75 * a["generator.out.weight"] + 0.25 * b["generator.out.weight"])
    save_model(LearnedModel(width=16, blocks=1, enc_width=8), tmp_path / "other.safetensors")
    with pytest.raises(SystemExit, match="different architectures"):
        avg.average(paths[0], tmp_path / "other.safetensors", 0.5)
