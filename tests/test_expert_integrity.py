"""Expert files are verified on load, mixes are validated, and saved bytes and modes are fixed.

Every damaged or inconsistent file must raise an ExpertFileError (a ValueError) that names the
file, what is wrong and the fix; safetensors' own errors never reach the user.
"""
import json
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from conftest import make_tiny_llama
from t2lib.methods.cem import CEMConfig
from t2lib.core.experts import Expert, ExpertFileError, ExpertFileMissingError, ExpertMismatchError, tensors_digest
from t2lib.core.mixing import mix
from t2lib.core.svd import decompose
from t2lib.core.svf import SVFModel

ROOT = Path(__file__).resolve().parents[1]
RETRAIN = "python -m t2lib train --preset tiny --task add_word"


@pytest.fixture
def svf(tmp_path):
    # hidden 64, mlp 128: 64 singular values per matrix, so the tensor data (6 x 256 bytes) is
    # longer than the 1000 bytes the corrupted-tail case zeroes; the header stays intact.
    model = make_tiny_llama(hidden=64, mlp=128)
    return SVFModel(model, decompose(model, "mlp", cache=False, progress=False), model_id="tiny")


def trained(svf, name="math", seed=1):
    """An expert with noise and the config a `python -m t2lib train` run records."""
    e = svf.new_expert(name=name, noise_std=0.3, seed=seed)
    e.config = {"preset": "tiny", "task": "add_word", "lr": 2e-3}
    e.metrics = {"test_accuracy": 0.5}
    return e


def saved(svf, tmp_path, name="math", seed=1) -> tuple[Expert, Path]:
    e = trained(svf, name, seed)
    e.save(tmp_path / name)
    return e, tmp_path / name


def edit_json(stem: Path, change) -> None:
    path = stem.parent / (stem.name + ".json")
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def refused(stem: Path, *what: str) -> str:
    """Loads `stem`, expects an ExpertFileError naming the file, `what`, and a fix; returns the message."""
    with pytest.raises(ExpertFileError) as info:
        Expert.load(stem)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and not isinstance(info.value, SafetensorError)
    assert str(stem) in message and "Fix:" in message and "git checkout" in message, message
    for w in what:
        assert w in message, message
    return message


# ------------------------------------------------------------------ the saved format

def test_json_and_header_record_the_digest(svf, tmp_path):
    e, stem = saved(svf, tmp_path)
    meta = json.loads((tmp_path / "math.json").read_text())
    assert meta["format_version"] == 2 and meta["partial"] is False
    assert meta["tensors_sha256"] == tensors_digest(e.stored_tensors())
    blob = (tmp_path / "math.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    assert header["__metadata__"]["tensors_sha256"] == meta["tensors_sha256"]
    assert list(header) == sorted(header) and list(header["__metadata__"]) == sorted(header["__metadata__"])
    loaded = Expert.load(stem)
    assert all(torch.equal(loaded.z[t], e.z[t]) for t in e.z) and list(loaded.z) == list(e.z)


# ------------------------------------------------------------------ damaged tensor files

def test_corrupted_tail_is_refused(svf, tmp_path):
    _, stem = saved(svf, tmp_path)
    path = tmp_path / "math.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1000:] = bytes(1000)  # the tail zeroed: still a valid safetensors file, other tensors
    path.write_bytes(bytes(blob))
    refused(stem, "math.safetensors is damaged", "do not match the sha256", f"`{RETRAIN} --out {stem}`")


def test_one_flipped_byte_is_refused(svf, tmp_path):
    _, stem = saved(svf, tmp_path)
    path = tmp_path / "math.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-300] ^= 0x01
    path.write_bytes(bytes(blob))
    refused(stem, "do not match the sha256")


@pytest.mark.parametrize("keep", [0.5, 8, 3])
def test_truncated_file_is_refused(svf, tmp_path, keep):
    _, stem = saved(svf, tmp_path)
    path = tmp_path / "math.safetensors"
    blob = path.read_bytes()
    path.write_bytes(blob[:int(len(blob) * keep) if keep < 1 else keep])
    refused(stem, "not a readable safetensors file", "cut short", RETRAIN)


def test_empty_file_is_refused(svf, tmp_path):
    _, stem = saved(svf, tmp_path)
    (tmp_path / "math.safetensors").write_bytes(b"")
    refused(stem, "is empty (0 bytes)", RETRAIN)


# ------------------------------------------------------------------ missing or broken JSON

def test_missing_json_or_tensors_are_named(svf, tmp_path):
    _, stem = saved(svf, tmp_path)
    (tmp_path / "math.json").unlink()
    with pytest.raises(FileNotFoundError) as info:  # still a FileNotFoundError for old callers
        Expert.load(stem)
    assert isinstance(info.value, ExpertFileMissingError) and "math.json is missing" in str(info.value)
    saved(svf, tmp_path)
    (tmp_path / "math.safetensors").unlink()
    refused(stem, "math.safetensors is missing", f"`{RETRAIN} --out {stem}`")  # the JSON still gives it


@pytest.mark.parametrize("field", ["targets", "base_model", "base_fingerprint", "parameterization"])
def test_json_without_a_required_field_is_refused(svf, tmp_path, field):
    _, stem = saved(svf, tmp_path)
    edit_json(stem, lambda m: m.pop(field))
    refused(stem, f"math.json lacks '{field}'", RETRAIN)


def test_json_that_does_not_parse_is_refused(svf, tmp_path):
    _, stem = saved(svf, tmp_path)
    (tmp_path / "math.json").write_text('{"name": "math", "targ')
    refused(stem, "is not valid JSON")


def test_json_from_a_newer_format_asks_for_an_update(svf, tmp_path):
    _, stem = saved(svf, tmp_path)
    edit_json(stem, lambda m: m.update(format_version=99))
    refused(stem, "format_version 99", "update the kit")


# ------------------------------------------------------------------ JSON and tensors disagree

def test_json_listing_fewer_targets_is_refused_even_if_partial(svf, tmp_path):
    _, stem = saved(svf, tmp_path)

    def keep_three(m):
        m["targets"] = dict(list(m["targets"].items())[:3])
        m["num_params"] = sum(m["targets"].values())
    edit_json(stem, keep_three)
    refused(stem, "lists 3 targets", "holds 6 tensors", "are not listed in the JSON")
    edit_json(stem, lambda m: m.update(partial=True))  # "partial" does not excuse a disagreement
    refused(stem, "lists 3 targets")


def test_json_naming_another_target_is_refused(svf, tmp_path):
    _, stem = saved(svf, tmp_path)

    def rename(m):
        first = next(iter(m["targets"]))
        m["targets"] = {first.replace("layers.0", "layers.7") if i == 0 else n: v
                        for i, (n, v) in enumerate(m["targets"].items())}
    edit_json(stem, rename)
    refused(stem, "listed in the JSON are not in the tensors", "model.layers.7.mlp.gate_proj.weight")


def test_json_with_other_sizes_is_refused(svf, tmp_path):
    _, stem = saved(svf, tmp_path)
    name = "model.layers.1.mlp.up_proj.weight"
    edit_json(stem, lambda m: m["targets"].update({name: 63}))
    refused(stem, f"shape (64,) for {name}", "says 63 singular values")


def test_json_with_other_parameterization_is_refused(svf, tmp_path):
    _, stem = saved(svf, tmp_path)
    edit_json(stem, lambda m: m.update(parameterization="sigmoid"))
    refused(stem, "parameterization='sigmoid'", "does not belong together")


def test_json_of_another_expert_is_refused(svf, tmp_path):
    saved(svf, tmp_path, "math", seed=1)
    saved(svf, tmp_path, "code", seed=2)  # same base model and parameterization, other z
    (tmp_path / "math.json").write_bytes((tmp_path / "code.json").read_bytes())
    refused(tmp_path / "math", "tensors_sha256", "does not belong together")


def test_tensors_of_another_dtype_are_refused(svf, tmp_path):
    e, stem = saved(svf, tmp_path)
    meta = json.loads((tmp_path / "math.json").read_text())
    header = {k: str(meta[k]) for k in ("base_fingerprint", "parameterization", "tensors_sha256")}
    save_file({n: v.half() for n, v in e.z.items()}, str(tmp_path / "math.safetensors"), metadata=header)
    refused(stem, "holds a float16 tensor")


# ------------------------------------------------------------------ partial experts

def test_partial_expert_is_flagged_and_loads(svf, tmp_path):
    e = trained(svf)
    e.z = {n: v for n, v in e.z.items() if "layers.0.mlp.down_proj" in n or "layers.1." in n}
    e.save(tmp_path / "part")
    assert json.loads((tmp_path / "part.json").read_text())["partial"] is True
    loaded = Expert.load(tmp_path / "part")
    assert list(loaded.z) == list(e.z)
    svf.apply(loaded)  # the uncovered targets keep their base weights
    svf.restore()
    # Without the flag the same gap reads as a target list cut short.
    edit_json(tmp_path / "part", lambda m: m.update(partial=False))
    refused(tmp_path / "part", "leave out 2 of the layer × module slots", "layer 0 mlp.gate_proj",
            '"partial": true')


def test_expert_on_one_module_type_is_not_partial(svf, tmp_path):
    """An expert on every layer of one module type (e.g. trained on the down projections only)
    covers its own target set: nothing to declare."""
    e = trained(svf)
    e.z = {n: v for n, v in e.z.items() if "down_proj" in n}
    e.save(tmp_path / "down")
    assert json.loads((tmp_path / "down.json").read_text())["partial"] is False
    assert list(Expert.load(tmp_path / "down").z) == list(e.z)


# ------------------------------------------------------------------ files from before digests

def write_format_1(e: Expert, stem: Path) -> None:
    """Writes `e` as the kit did before digests (format 1)."""
    meta = e.metadata()
    for key in ("tensors_sha256", "partial"):
        meta.pop(key)
    meta["format_version"] = 1
    header = {k: str(meta[k]) for k in ("name", "base_model", "base_fingerprint", "parameterization")}
    save_file(e.stored_tensors(), str(stem) + ".safetensors", metadata=header)
    (stem.parent / (stem.name + ".json")).write_text(json.dumps(meta, indent=2))


def test_format_1_loads_with_a_warning_and_resaves_with_a_digest(svf, tmp_path):
    e = trained(svf)
    write_format_1(e, tmp_path / "old")
    with pytest.warns(UserWarning, match=r"no tensors_sha256 .*`Expert\.load\(p\)\.save\(p\)`"):
        old = Expert.load(tmp_path / "old")
    assert all(torch.equal(old.z[n], e.z[n]) for n in e.z)
    old.save(tmp_path / "old")
    assert json.loads((tmp_path / "old.json").read_text())["tensors_sha256"] == tensors_digest(e.stored_tensors())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning now
        again = Expert.load(tmp_path / "old")
    assert all(torch.equal(again.z[n], e.z[n]) for n in e.z)
    # Format 1 files are still checked for everything but the digest.
    write_format_1(e, tmp_path / "old")
    (tmp_path / "old.safetensors").write_bytes(b"")
    refused(tmp_path / "old", "is empty")


def test_shipped_experts_carry_a_digest_and_load_without_warning():
    folder = ROOT / "experts" / "tiny"
    for name in ("math", "code", "reasoning", "classification"):
        meta = json.loads((folder / f"{name}.json").read_text())
        assert meta["format_version"] == 2 and len(meta["tensors_sha256"]) == 64
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            e = Expert.load(folder / name)
        assert len(e.z) == 90 and all(v.numel() == 576 for v in e.z.values())


# ------------------------------------------------------------------ mixing

def test_mix_refuses_a_one_entry_z(svf):
    a, b = trained(svf, "a", 1), trained(svf, "b", 2)
    target = "model.layers.0.mlp.up_proj.weight"
    b.z[target] = torch.ones(1)  # would broadcast over all 64 singular values
    with pytest.raises(ExpertMismatchError, match=rf"{target} has 1 entries in 'b' and 64 in 'a'"):
        mix([a, b], [0.5, 0.5])
    with pytest.raises(ExpertMismatchError, match=rf"{target} has 1 entries in 'b'"):
        mix([a, b], torch.tensor([0.5, 0.5]))


def test_mix_refuses_other_sizes(svf):
    a, b = trained(svf, "a", 1), trained(svf, "b", 2)
    target = "model.layers.1.mlp.down_proj.weight"
    a.z[target] = torch.ones(100)
    with pytest.raises(ExpertMismatchError, match=rf"{target} has 64 entries in 'b' and 100 in 'a'"):
        mix([a, b], [0.5, 0.5])
    b.z[target] = torch.ones(10, 10)
    with pytest.raises(ExpertMismatchError, match=r"shape \(10, 10\)"):
        mix([a, b], [0.5, 0.5])


def test_mix_refuses_other_targets(svf):
    a, b = trained(svf, "a", 1), trained(svf, "b", 2)
    dropped = "model.layers.1.mlp.gate_proj.weight"
    del b.z[dropped]
    with pytest.raises(ExpertMismatchError, match=rf"different targets \('b' lacks 1, e\.g\. {dropped}\)"):
        mix([a, b], [0.5, 0.5])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_mix_refuses_non_finite_alpha(svf, bad):
    a, b = trained(svf, "a", 1), trained(svf, "b", 2)
    with pytest.raises(ValueError, match=rf"alpha for expert 'b' is {bad}: mixing weights must be finite"):
        mix([a, b], [0.5, bad])
    per_layer = torch.full((2, 2), 0.5)
    per_layer[0, 1] = bad
    with pytest.raises(ValueError, match=rf"alpha for expert 'a' at layer 1 is {bad}"):
        mix([a, b], per_layer)


def test_mix_refuses_bad_alpha_shapes_and_nan_z(svf):
    a, b = trained(svf, "a", 1), trained(svf, "b", 2)
    for alpha in ([0.5], [[0.5, 0.5, 0.5]] * 2, torch.ones(2, 3), 0.5):
        with pytest.raises(ValueError, match=r"expected \(2,\), \(2, 2\) or \(2, 6\)"):
            mix([a, b], alpha)
    with pytest.raises(ValueError, match="alpha must be numbers"):
        mix([a, b], [0.5, [0.1, 0.2]])
    with pytest.raises(ValueError, match="at least one expert"):
        mix([], torch.ones(0))
    b.z["model.layers.0.mlp.gate_proj.weight"][3] = float("nan")
    with pytest.raises(ValueError, match="expert 'b' has NaN or inf in its z for model.layers.0.mlp.gate_proj"):
        mix([a, b], [0.5, 0.5])


def test_mix_accepts_weights_outside_zero_one(svf):
    a, b = trained(svf, "a", 1), trained(svf, "b", 2)
    m = mix([a, b], [1.5, -0.5])  # extrapolation is a legitimate use
    n = next(iter(a.z))
    torch.testing.assert_close(m.z[n], 1.5 * a.z[n] - 0.5 * b.z[n])


def test_cem_bounds_are_checked():
    with pytest.raises(ValueError, match="bounds must be two finite numbers"):
        CEMConfig(bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="bounds must be two finite numbers"):
        CEMConfig(bounds=(0.0, float("nan")))


# ------------------------------------------------------------------ bytes and modes

SAVE_IN_A_NEW_PROCESS = """
import sys
sys.path[:0] = [sys.argv[2], sys.argv[2] + "/tests"]
from conftest import make_tiny_llama
from t2lib.core.svd import decompose
from t2lib.core.svf import SVFModel
model = make_tiny_llama(hidden=64, mlp=128)
svf = SVFModel(model, decompose(model, "mlp", cache=False, progress=False), model_id="tiny")
e = svf.new_expert(name="math", noise_std=0.3, seed=1)
e.config = {"preset": "tiny", "task": "add_word", "lr": 2e-3}
e.metrics = {"test_accuracy": 0.5}
e.save(sys.argv[1])
"""


def test_same_expert_gives_the_same_bytes_in_separate_processes(svf, tmp_path):
    trained(svf).save(tmp_path / "here")
    for i, seed in enumerate(("1", "2")):  # hash seeds differ, as between any two runs
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", SAVE_IN_A_NEW_PROCESS, str(tmp_path / f"p{i}"), str(ROOT)],
                       check=True, env=env, cwd=tmp_path, timeout=300)
    for suffix in (".safetensors", ".json"):
        here = (tmp_path / f"here{suffix}").read_bytes()
        assert (tmp_path / f"p0{suffix}").read_bytes() == here
        assert (tmp_path / f"p1{suffix}").read_bytes() == here


@pytest.fixture
def umask():
    """Sets the process umask for one test and puts the old one back."""
    before = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(before)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_follow_the_umask(svf, tmp_path, umask, mask, mode):
    from t2lib.atomic import atomic_path, atomic_write_json
    umask(mask)
    trained(svf).save(tmp_path / "e")
    model = make_tiny_llama(seed=3)
    decompose(model, "mlp", cache=tmp_path / "svd", progress=False)  # the SVD cache: safetensors too
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    with atomic_path(tmp_path / "t.safetensors") as tmp:
        save_file({"x": torch.zeros(2)}, str(tmp))  # a writer that makes its own 0600 file
    files = [tmp_path / "e.safetensors", tmp_path / "e.json", tmp_path / "r.json", tmp_path / "t.safetensors",
             *(tmp_path / "svd").rglob("*.safetensors")]
    assert len(files) > 4
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: oct(mode) for f in files}
