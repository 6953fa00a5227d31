"""Shared fixtures: a random-init tiny Llama with a character-level tokenizer.

Both are built in memory in milliseconds, so unit tests never touch a hub or a disk cache.
"""
from __future__ import annotations

import copy

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from fishfarm.backends.hf import HFBackend

SPECIAL_TOKENS = ["<pad>", "<s>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Returns a character-level tokenizer over printable ASCII with a ChatML template."""
    chars = [chr(i) for i in range(32, 127)] + ["\n"]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + chars)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="?"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_tiny_llama(*, num_layers: int = 2, hidden: int = 32, mlp: int = 64, seed: int = 0,
                    vocab_size: int | None = None) -> LlamaForCausalLM:
    """Returns a random-init Llama small enough for unit tests (about 20k parameters)."""
    cfg = LlamaConfig(
        vocab_size=vocab_size or len(SPECIAL_TOKENS) + 96,
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=3,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    # Random init gives near-uniform logits; a larger scale makes greedy outputs prompt-dependent.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model.eval()


@pytest.fixture
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return make_tiny_tokenizer()


@pytest.fixture
def tiny_llama() -> LlamaForCausalLM:
    return make_tiny_llama()


@pytest.fixture
def one_torch_thread():
    """Tiny-model ops are too small to split: two threads on a busy 2-core machine thrash
    (seconds instead of milliseconds per generate call)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_tiny_svf(*, seed: int = 0, batch_size: int = 8):
    """Returns (svf, backend) over a fresh tiny Llama: the SVF wrapper (SVD not cached) and the
    HF backend from the factory, attached to it as a `Session` does."""
    from fishfarm.backends import make_backend
    from t2lib.core.svd import decompose
    from t2lib.core.svf import SVFModel

    model = make_tiny_llama(seed=seed)
    svf = SVFModel(model, decompose(model, "mlp", cache=False, progress=False), model_id="tiny")
    backend = make_backend("hf", model, make_tiny_tokenizer(), batch_size=batch_size, progress=False)
    svf.attach(backend)
    return svf, backend


@pytest.fixture
def tiny_svf(one_torch_thread):
    """(svf, backend) over a fresh tiny Llama, one torch thread (`make_tiny_svf`)."""
    return make_tiny_svf()


class OwnCopyBackend(HFBackend):
    """A backend that keeps its own copy of the model, as a vLLM engine does: it sees an expert
    only through `sync_weights`, and computes no gradients for the live model."""
    shares_weights = False

    def __init__(self, model, tokenizer, **kw):
        super().__init__(copy.deepcopy(model), tokenizer, **kw)
        self.synced: list[set[str]] = []

    def sync_weights(self, weights):
        own = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in weights.items():
                own[name].copy_(tensor)
        self.synced.append(set(weights))
