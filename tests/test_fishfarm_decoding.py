"""The HF backend's lean decoding loop against `model.generate`: the same greedy answers and the
same seeded samples, while rows end at different steps and the batch is compacted."""
from __future__ import annotations

import dataclasses
import gc
import weakref

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

from conftest import SPECIAL_TOKENS, make_tiny_llama, make_tiny_tokenizer
from fishfarm import GenerationRequest, HFBackend, Prompt, SamplingParams
from fishfarm.backends import decoding_plan, families, onednn
from fishfarm.backends.decoding import LeanDecoder, unsupported

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTIONS = ["hi", "What is 2+2?", "a much longer prompt than all the others here", "x",
             "Tell me a story about a fish", "abc", "seven", "the eighth prompt"]
SETTINGS = [dict(max_new_tokens=24), dict(max_new_tokens=24, temperature=1.0, seed=3),
            dict(max_new_tokens=24, temperature=0.7, top_p=0.8, seed=11)]


def requests(**sampling):
    return [GenerationRequest(Prompt.chat(q), SamplingParams(**sampling)) for q in QUESTIONS]


def both(model, reqs, **options):
    tok = make_tiny_tokenizer()
    ref = HFBackend(model, tok, batch_size=8, progress=False, decoding="generate", **options).generate(reqs)
    lean = HFBackend(model, tok, batch_size=8, progress=False, decoding="lean", **options).generate(reqs)
    return ref, lean


def small_config(cls, **extra):
    return cls(vocab_size=len(SPECIAL_TOKENS) + 96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0,
               bos_token_id=1, eos_token_id=3, tie_word_embeddings=False, **extra)


def scaled(model):
    with torch.no_grad():  # as make_tiny_llama: prompt-dependent greedy answers
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model.eval()


def an_eos_ending_rows_at_different_steps(answers) -> int:
    """Returns a token that first appears at several different positions across the answers."""
    firsts: dict[int, set[int]] = {}
    for a in answers:
        for pos, t in enumerate(a.token_ids):
            if t not in {x for x in a.token_ids[:pos]}:
                firsts.setdefault(t, set()).add(pos)
    return max(firsts, key=lambda t: (len(firsts[t]), -min(firsts[t])))


@pytest.mark.parametrize("sampling", SETTINGS, ids=["greedy", "sampled", "top_p"])
def test_rows_that_end_early_leave_the_batch_with_the_same_answers(sampling, tiny_llama, monkeypatch):
    free, _ = both(tiny_llama, requests(**sampling))
    tiny_llama.generation_config.eos_token_id = [3, an_eos_ending_rows_at_different_steps(free)]
    sizes = []
    real = LeanDecoder._forward
    monkeypatch.setattr(LeanDecoder, "_forward",
                        lambda self, plan, ids, *a, **k: (sizes.append(len(ids)), real(self, plan, ids, *a, **k))[1])
    ref, lean = both(tiny_llama, requests(**sampling))
    assert [r.token_ids for r in lean] == [r.token_ids for r in ref]
    assert [(r.text, r.finish_reason) for r in lean] == [(r.text, r.finish_reason) for r in ref]
    lengths = {len(r.token_ids) for r in ref if r.finish_reason == "eos"}
    assert len(lengths) >= 2  # rows really ended at different steps
    assert min(sizes) < len(QUESTIONS)  # and the batch shrank as they did
    assert sizes[0] == len(QUESTIONS)


def test_stop_strings_and_budgets_match_generate(tiny_llama):
    free, _ = both(tiny_llama, requests(max_new_tokens=16))
    answer = next(r.text for r in free if len(set(r.text)) > 3)
    reqs = [GenerationRequest(Prompt.chat(q), SamplingParams(max_new_tokens=16, stop=(answer[2:4],)))
            for q in QUESTIONS] + requests(max_new_tokens=5)
    ref, lean = both(tiny_llama, reqs)
    assert [(r.token_ids, r.text, r.finish_reason) for r in lean] == [(r.token_ids, r.text, r.finish_reason)
                                                                      for r in ref]
    assert any(r.finish_reason == "stop" for r in lean)
    assert [len(r.token_ids) for r in lean[-len(QUESTIONS):]] == [5] * len(QUESTIONS)


@pytest.mark.parametrize("family", ["qwen2", "mistral"])
def test_other_llama_family_models_decode_as_generate(family):
    torch.manual_seed(0)
    model = (Qwen2ForCausalLM(small_config(Qwen2Config)) if family == "qwen2"  # q, k, v with biases
             else MistralForCausalLM(small_config(MistralConfig, sliding_window=None)))
    model = scaled(model)
    assert unsupported(model, 100) is None
    for sampling in SETTINGS:
        ref, lean = both(model, requests(**sampling))
        assert [r.token_ids for r in lean] == [r.token_ids for r in ref]


def test_answers_follow_live_weights_and_peft_adapters(tiny_llama, tiny_tokenizer):
    from peft import LoraConfig, get_peft_model
    backend = HFBackend(tiny_llama, tiny_tokenizer, batch_size=8, progress=False, decoding="lean")
    before = backend.generate(requests(max_new_tokens=12))
    with torch.no_grad():
        tiny_llama.model.layers[0].mlp.down_proj.weight.mul_(-3.0)  # an expert written in place
    changed = backend.generate(requests(max_new_tokens=12))
    assert changed != before
    assert changed == HFBackend(tiny_llama, tiny_tokenizer, batch_size=8, progress=False,
                                decoding="generate").generate(requests(max_new_tokens=12))
    peft = get_peft_model(make_tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                        init_lora_weights=False))
    ref, lean = both(peft, requests(max_new_tokens=12))
    plain, _ = both(make_tiny_llama(), requests(max_new_tokens=12))
    assert [r.token_ids for r in lean] == [r.token_ids for r in ref]
    assert [r.token_ids for r in lean] != [r.token_ids for r in plain]  # the adapter is in the answers


def test_unsupported_models_fall_back_or_are_refused(tiny_llama, tiny_tokenizer, monkeypatch):
    window = small_config(MistralConfig, sliding_window=40)
    torch.manual_seed(0)
    mistral = scaled(MistralForCausalLM(window))
    assert "sliding window" in unsupported(mistral, 100)
    assert unsupported(mistral, 30) is None
    reqs = requests(max_new_tokens=24)  # the longest prompt plus the budget passes 40 positions
    calls = []
    real = LeanDecoder.decode
    monkeypatch.setattr(LeanDecoder, "decode", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    short = HFBackend(mistral, tiny_tokenizer, progress=False).generate(requests(max_new_tokens=2)[:1])
    assert calls and short  # "auto" decodes lean where the batch fits the window
    calls.clear()
    auto = HFBackend(mistral, tiny_tokenizer, progress=False).generate(reqs)
    ref = HFBackend(mistral, tiny_tokenizer, progress=False, decoding="generate").generate(reqs)
    assert not calls and auto == ref  # and runs generate where it does not
    with pytest.raises(ValueError, match="sliding window.*decoding='generate'"):
        HFBackend(mistral, tiny_tokenizer, progress=False, decoding="lean").generate(reqs)
    with pytest.raises(ValueError, match="decoding='fast'.*auto, lean, generate"):
        HFBackend(tiny_llama, tiny_tokenizer, decoding="fast")
    llama = families.MODEL_FAMILIES["llama"]
    monkeypatch.setitem(families.MODEL_FAMILIES, "llama", dataclasses.replace(llama, lean_decoding=False))
    with pytest.raises(ValueError, match="model type 'llama'"):
        HFBackend(tiny_llama, tiny_tokenizer, decoding="lean")
    HFBackend(tiny_llama, tiny_tokenizer, progress=False).generate(requests(max_new_tokens=4))
    assert not calls  # auto: generate ran



def test_a_shared_system_prompt_runs_once_with_the_same_answers(tiny_llama, monkeypatch):
    sizes = []
    real = LeanDecoder._forward
    monkeypatch.setattr(LeanDecoder, "_forward", lambda self, plan, ids, *a, **k: (sizes.append(tuple(ids.shape)),
                                                                                    real(self, plan, ids, *a, **k))[1])
    for sampling in SETTINGS:
        reqs = [GenerationRequest(Prompt.chat(q, system="You are a careful assistant."), SamplingParams(**sampling))
                for q in QUESTIONS]
        sizes.clear()
        ref, lean = both(tiny_llama, reqs)
        assert [r.token_ids for r in lean] == [r.token_ids for r in ref]
        header = "<|im_start|>system\nYou are a careful assistant.<|im_end|>\n<|im_start|>user\n"
        prefix = len(make_tiny_tokenizer()(header, add_special_tokens=False)["input_ids"])
        assert sizes[0] == (1, prefix)  # the shared prefix, once
        assert sizes[1][0] == len(QUESTIONS)
    sizes.clear()
    unshared, _ = both(tiny_llama, reqs, min_shared_prefix=0)
    assert unshared == ref and sizes[0][0] == len(QUESTIONS)  # 0 turns it off


@pytest.mark.skipif(not onednn.onednn_available(), reason="torch here has no oneDNN fused linear kernel")
def test_packed_weights_fuse_plain_layers_per_call_and_match_the_unpacked_products():
    from peft import LoraConfig, get_peft_model
    model = make_tiny_llama()
    decoder = LeanDecoder(model)
    assert decoder.pack
    plan = decoder.plan(8)
    layer, attn, mlp = plan.layers[0], model.model.layers[0].self_attn, model.model.layers[0].mlp
    assert isinstance(layer.attention_input, decoding_plan.PackedAttentionInput)
    assert isinstance(layer.mlp, decoding_plan.GatedMLP) and isinstance(layer.mlp.gate_up, onednn.Packed)
    products = (layer.attention_output, layer.mlp.down, plan.head.module)
    assert all(isinstance(f.__self__, onednn.Packed) for f in products)
    x = torch.randn(3, 5, 32)
    gate, up = layer.mlp.gate_up(x)
    torch.testing.assert_close(gate, mlp.gate_proj(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(up, mlp.up_proj(x), rtol=1e-5, atol=1e-5)
    # q and k come out with each head's rotary halves interleaved, v as it is.
    d, heads, kv_heads = attn.head_dim, model.config.num_attention_heads, model.config.num_key_value_heads
    q, k, v = layer.attention_input.packed(x)
    interleave = lambda y: y.unflatten(-1, (-1, 2, d // 2)).transpose(-1, -2).flatten(-3)
    torch.testing.assert_close(q, interleave(attn.q_proj(x)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(k, interleave(attn.k_proj(x)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v, attn.v_proj(x), rtol=1e-5, atol=1e-5)
    # Rotating the interleaved pairs as complex numbers is the model's own rotary embedding.
    cos, sin = model.model.rotary_emb(x, torch.arange(5)[None].expand(3, 5))
    rotation = torch.complex(cos[..., :d // 2], sin[..., :d // 2]).unsqueeze(2)
    rotated = torch.view_as_real(torch.view_as_complex(torch.cat([q, k], -1).unflatten(-1, (-1, d // 2, 2)))
                                 * rotation).flatten(-2)
    view = lambda y: y.unflatten(-1, (-1, d)).transpose(1, 2)
    q_ref, k_ref = families.MODEL_FAMILIES["llama"].modeling().apply_rotary_pos_emb(
        view(attn.q_proj(x)), view(attn.k_proj(x)), cos, sin)
    assert rotated.shape == (3, 5, heads + kv_heads, d)
    torch.testing.assert_close(rotated[:, :, :heads], interleave(q_ref.transpose(1, 2)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rotated[:, :, heads:], interleave(k_ref.transpose(1, 2)), rtol=1e-5, atol=1e-5)
    # The packed attention input is the unpacked one, each q and k head's features interleaved.
    unpacked_plan = decoding_plan.plan_decoding(model, rows=8, onednn=True, pack=False)
    assert isinstance(unpacked_plan.layers[0].attention_input, decoding_plan.ModuleAttentionInput)
    rotary = decoding_plan.Rotary(cos, sin)
    packed_qkv, plain_qkv = layer.attention_input(x, rotary), unpacked_plan.layers[0].attention_input(x, rotary)
    for got, want, rotated_head in zip(packed_qkv, plain_qkv, (True, True, False)):
        torch.testing.assert_close(got, interleave(want) if rotated_head else want, rtol=1e-5, atol=1e-5)
    # The copies live for one call: the weights are read again at the next.
    answers = [r.token_ids for r in HFBackend(model, make_tiny_tokenizer(), progress=False,
                                              decoding="lean").generate(requests(max_new_tokens=12))]
    unpacked = HFBackend(model, make_tiny_tokenizer(), progress=False, decoding="lean")
    unpacked._lean_decoder(100).pack = False
    assert [r.token_ids for r in unpacked.generate(requests(max_new_tokens=12))] == answers
    # Adapter layers are not plain: they keep running as modules, the rest is packed.
    peft = get_peft_model(make_tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    adapted = LeanDecoder(peft)
    layer, attn = adapted.plan(8).layers[0], adapted.body.layers[0].self_attn
    assert isinstance(layer.attention_input, decoding_plan.ModuleAttentionInput)
    q_proj, _, v_proj = layer.attention_input.projections
    assert (q_proj, v_proj) == (attn.q_proj, attn.v_proj) and isinstance(layer.mlp.gate_up, onednn.Packed)
    # The plan is the call's own: passed to its steps, kept by nothing once the call returns.
    plans = []
    real_plan = adapted.plan
    adapted.plan = lambda rows: (plans.append(weakref.ref(p := real_plan(rows))), p)[1]
    out = adapted.decode([[5, 6, 7]], max_new_tokens=3, pad_id=0, finished=lambda row, ids: None)
    gc.collect()
    assert len(out[0]) == 3 and len(plans) == 1 and plans[0]() is None
