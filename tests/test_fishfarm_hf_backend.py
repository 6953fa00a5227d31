"""HFBackend on a random-init tiny Llama: batching, stopping, sampling, live weights, log-probs."""
from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_tokenizer
from fishfarm import (Backend, GenerationRequest, HFBackend, LogprobRequest, Prompt,
                      SamplingParams)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


QUESTIONS = ["hi", "What is 2+2?", "a much longer prompt than all the others here", "x",
             "Tell me a story about a fish", "abc"]


def greedy(questions, **sampling):
    return [GenerationRequest(Prompt.chat(q), SamplingParams(**{"max_new_tokens": 12,
                                                                 **sampling}))
            for q in questions]


@pytest.fixture
def backend(tiny_llama, tiny_tokenizer):
    return HFBackend(tiny_llama, tiny_tokenizer, batch_size=4, progress=False)


def test_is_a_backend(backend):
    assert isinstance(backend, Backend)


def test_batched_greedy_equals_one_at_a_time(backend):
    requests = greedy(QUESTIONS)
    batched = backend.generate(requests)
    single = [backend.generate([r])[0] for r in requests]
    assert [b.token_ids for b in batched] == [s.token_ids for s in single]
    assert [b.text for b in batched] == [s.text for s in single]
    assert len({b.text for b in batched}) > 1  # answers depend on the prompt
    assert all(len(b.token_ids) == 12 and b.finish_reason == "length" for b in batched)
    assert [b.prompt_tokens for b in batched] == [len(backend.encode(r.prompt)) for r in requests]


def test_generated_pad_tokens_are_kept_not_taken_for_padding(tiny_llama):
    # With 'z' as the pad token, genuine 'z's in the output must survive batching.
    tok = make_tiny_tokenizer()
    tok.pad_token = "z"
    backend = HFBackend(tiny_llama, tok, batch_size=8, progress=False)
    requests = greedy(QUESTIONS)
    batched = backend.generate(requests)
    single = [backend.generate([r])[0] for r in requests]
    assert [b.text for b in batched] == [s.text for s in single]
    assert any("z" in b.text for b in batched)


def test_stop_strings_cut_the_answer(backend):
    free = backend.generate(greedy(QUESTIONS))
    answer = next(r.text for r in free if len(set(r.text)) > 2)
    stop = answer[3:5]
    first = answer.find(stop)
    stopped = backend.generate(greedy(QUESTIONS, stop=(stop,)))
    target = stopped[[r.text for r in free].index(answer)]
    assert target.text == answer[:first] and target.finish_reason == "stop"
    assert len(target.token_ids) < 12
    for f, s in zip(free, stopped):  # other rows are unaffected apart from their own stops
        assert f.text.startswith(s.text)


def test_eos_ends_a_row_and_is_kept_in_token_ids(backend, tiny_llama):
    free = backend.generate(greedy(QUESTIONS[:2]))
    eos = free[0].token_ids[4]  # pretend the 5th generated token is an end-of-sequence token
    tiny_llama.generation_config.eos_token_id = [3, eos]
    out = backend.generate(greedy(QUESTIONS[:2]))
    assert out[0].finish_reason == "eos"
    first_eos = free[0].token_ids.index(eos)
    assert out[0].token_ids == free[0].token_ids[:first_eos + 1]


def test_model_generation_defaults_do_not_leak_into_greedy(backend, tiny_llama):
    before = backend.generate(greedy(QUESTIONS))
    cfg = tiny_llama.generation_config
    cfg.do_sample, cfg.temperature, cfg.top_k, cfg.repetition_penalty = True, 5.0, 3, 2.0
    assert backend.generate(greedy(QUESTIONS)) == before


def test_seeded_sampling_repeats_and_leaves_global_rng_alone(backend):
    sampled = greedy(QUESTIONS, temperature=1.0, seed=7)
    state = torch.random.get_rng_state()
    a = backend.generate(sampled)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert backend.generate(sampled) == a
    other = backend.generate(greedy(QUESTIONS, temperature=1.0, seed=8))
    assert [r.text for r in other] != [r.text for r in a]
    assert [r.text for r in a] != [r.text for r in backend.generate(greedy(QUESTIONS))]


def test_mixed_sampling_settings_keep_request_order(backend):
    requests = greedy(QUESTIONS[:3]) + greedy(QUESTIONS[:3], max_new_tokens=5)
    out = backend.generate(requests)
    assert [len(r.token_ids) for r in out] == [12, 12, 12, 5, 5, 5]
    assert [r.text[:5] for r in out[:3]] == [r.text for r in out[3:]]


def test_answers_follow_the_live_weights(backend, tiny_llama):
    before = backend.generate(greedy(QUESTIONS))
    weight = tiny_llama.model.layers[0].mlp.down_proj.weight
    original = weight.detach().clone()
    with torch.no_grad():
        weight.mul_(-3.0)  # what applying an expert in place does to a target matrix
    assert backend.model is tiny_llama
    assert backend.generate(greedy(QUESTIONS)) != before
    with torch.no_grad():
        weight.copy_(original)
    assert backend.generate(greedy(QUESTIONS)) == before


def test_prompt_chat_template_overrides_the_tokenizer(backend, tiny_tokenizer):
    default = Prompt.chat("hello", system="be brief")
    assert backend.render(default) == tiny_tokenizer.apply_chat_template(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        tokenize=False, add_generation_prompt=True)
    own = Prompt.chat("hello", chat_template="Q: {{ messages[-1]['content'] }}\nA:")
    assert backend.render(own) == "Q: hello\nA:"
    assert backend.render(Prompt.raw("plain text")) == "plain text"


def test_response_prefix_is_continued_not_closed(backend):
    prompt = Prompt.chat("Write add", response_prefix="```python\n")
    rendered = backend.render(prompt)
    assert rendered.endswith("<|im_start|>assistant\n```python\n")
    assert rendered.count("<|im_end|>") == 1  # the user turn is closed, the answer is not
    assert backend.generate([GenerationRequest(prompt, SamplingParams(max_new_tokens=3))])


def test_missing_chat_template_is_named(tiny_llama):
    tok = make_tiny_tokenizer()
    tok.chat_template = None
    backend = HFBackend(tiny_llama, tok, progress=False)
    with pytest.raises(ValueError, match="chat template"):
        backend.render(Prompt.chat("hi"))


def test_progress_bar_can_be_shown_or_hidden(tiny_llama, tiny_tokenizer, capsys):
    HFBackend(tiny_llama, tiny_tokenizer, progress=True).generate(greedy(QUESTIONS[:2]))
    assert "generate" in capsys.readouterr().err
    HFBackend(tiny_llama, tiny_tokenizer, progress=True).generate(greedy(QUESTIONS[:2]),
                                                                  progress=False)
    assert "generate" not in capsys.readouterr().err


# --- log-probabilities ------------------------------------------------------------------------

def direct_logprobs(model, prompt_ids, cont_ids):
    ids = torch.tensor([prompt_ids + cont_ids])
    logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
    return torch.stack([logp[len(prompt_ids) - 1 + j, t] for j, t in enumerate(cont_ids)])


def logprob_requests(backend):
    answers = backend.generate(greedy(QUESTIONS))
    return [LogprobRequest(Prompt.chat(q), continuation_ids=a.token_ids)
            for q, a in zip(QUESTIONS, answers)] + [
        LogprobRequest(Prompt.raw("The answer is"), continuation=" 42."),
        LogprobRequest(Prompt.chat("empty"), continuation="")]


def test_logprobs_match_a_direct_forward_pass(backend, tiny_llama):
    requests = logprob_requests(backend)
    out = backend.logprobs(requests)
    assert out.counts.tolist() == [12] * len(QUESTIONS) + [4, 0]
    for req, per_token, total in zip(requests, out.per_token, out.sums):
        cont = list(req.continuation_ids) if req.continuation_ids is not None else \
            backend.tokenizer(req.continuation, add_special_tokens=False)["input_ids"]
        if not cont:
            assert total.item() == 0 and per_token.numel() == 0
            continue
        with torch.no_grad():
            expected = direct_logprobs(tiny_llama, backend.encode(req.prompt), cont)
        torch.testing.assert_close(per_token, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(total, expected.sum(), atol=1e-4, rtol=1e-5)
    assert not out.sums.requires_grad
    torch.testing.assert_close(out.mean()[:-1], out.sums[:-1] / out.counts[:-1])


def test_logprobs_do_not_depend_on_chunking(tiny_llama, tiny_tokenizer):
    small = HFBackend(tiny_llama, tiny_tokenizer, logprob_batch_size=1, progress=False)
    big = HFBackend(tiny_llama, tiny_tokenizer, logprob_batch_size=16, progress=False)
    requests = logprob_requests(big)
    torch.testing.assert_close(small.logprobs(requests).sums, big.logprobs(requests).sums,
                               atol=1e-4, rtol=1e-5)


def test_only_continuation_positions_reach_the_lm_head(backend, tiny_llama):
    requests = logprob_requests(backend)
    rows = []
    hook = tiny_llama.lm_head.register_forward_hook(lambda m, i, o: rows.append(i[0].shape))
    try:
        out = backend.logprobs(requests)
    finally:
        hook.remove()
    # One (tokens, hidden) input per chunk of 4 requests, never a (batch, length, hidden) one.
    assert len(rows) == 2 and all(len(r) == 2 for r in rows)
    assert sum(r[0] for r in rows) == int(out.counts.sum())


def test_logprobs_with_grad_backpropagate_like_a_direct_pass(backend, tiny_llama):
    requests = logprob_requests(backend)[:3]
    target = tiny_llama.model.layers[1].mlp.down_proj.weight
    out = backend.logprobs(requests, grad=True)
    assert out.sums.requires_grad
    (grad,) = torch.autograd.grad(out.mean().sum(), target)
    direct = sum(direct_logprobs(tiny_llama, backend.encode(r.prompt),
                                 list(r.continuation_ids)).mean() for r in requests)
    (expected,) = torch.autograd.grad(direct, target)
    assert grad.abs().sum() > 0
    torch.testing.assert_close(grad, expected, atol=1e-4, rtol=1e-4)


def test_token_budget_batches_long_prompts_smaller(tiny_llama, tiny_tokenizer):
    backend = HFBackend(tiny_llama, tiny_tokenizer, batch_size=4, max_batch_tokens=100, progress=False)
    encoded = [[1] * n for n in (60, 50, 20, 20, 20, 20, 20, 10)]
    batches = backend._batches(list(range(8)), encoded)
    assert batches == [[0], [1, 2], [3, 4, 5, 6], [7]]  # 2 x 50 and 4 x 20 fit in 100
    for batch in batches:
        assert len(batch) <= 4 and (len(batch) == 1 or len(batch) * len(encoded[batch[0]]) <= 100)
    unlimited = HFBackend(tiny_llama, tiny_tokenizer, batch_size=4, progress=False)
    assert unlimited._batches(list(range(8)), encoded) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # Same greedy answers whatever the batching.
    requests = [GenerationRequest(Prompt.chat(q), SamplingParams(max_new_tokens=6)) for q in QUESTIONS]
    assert [r.text for r in backend.generate(requests)] == [r.text for r in unlimited.generate(requests)]


def test_token_logprobs_match_log_softmax_gather_in_value_and_gradient():
    from fishfarm.backends.hf import token_logprobs

    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(7, 50, generator=g, dtype=torch.float64)).requires_grad_(True)
    targets = torch.tensor([0, 49, 3, 3, 17, 8, 22])
    weights = torch.randn(7, generator=g, dtype=torch.float64)
    expected = torch.log_softmax(logits, -1).gather(1, targets[:, None])[:, 0]
    (weights * expected).sum().backward()
    grad_expected, logits.grad = logits.grad, None
    got = token_logprobs(logits, targets)
    (weights * got).sum().backward()
    torch.testing.assert_close(got, expected.detach(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(logits.grad, grad_expected, rtol=1e-9, atol=1e-9)
    assert torch.autograd.gradcheck(lambda x: token_logprobs(x, targets), (logits.detach().requires_grad_(True),))


def test_a_shared_prefix_runs_once_with_the_same_logprobs_and_gradient(tiny_llama, tiny_tokenizer):
    system = "You answer questions about numbers briefly and precisely, one word at a time."
    requests = [LogprobRequest(Prompt.chat(q, system=system), continuation=c)
                for q, c in zip(QUESTIONS, (" four", " 12 and more", " yes", " the end of it"))]
    shared = HFBackend(tiny_llama, tiny_tokenizer, progress=False, min_shared_prefix=8)
    plain = HFBackend(tiny_llama, tiny_tokenizer, progress=False, min_shared_prefix=0)
    encoded = [shared.encode(r.prompt) for r in requests]
    common = next(i for i in range(min(map(len, encoded))) if len({tuple(e[:i + 1]) for e in encoded}) > 1)
    assert common >= 8
    rows = []
    hook = tiny_llama.model.embed_tokens.register_forward_hook(lambda m, i, o: rows.append(tuple(i[0].shape)))
    target = tiny_llama.model.layers[0].mlp.up_proj.weight
    try:
        out = shared.logprobs(requests, grad=True)
        (grad,) = torch.autograd.grad((out.sums * torch.tensor([1.0, -2.0, 0.5, 3.0])).sum(), target)
    finally:
        hook.remove()
    assert rows[0] == (1, common) and rows[1][0] == len(requests)  # the prefix once, then the rest
    expected = plain.logprobs(requests, grad=True)
    (expected_grad,) = torch.autograd.grad((expected.sums * torch.tensor([1.0, -2.0, 0.5, 3.0])).sum(), target)
    torch.testing.assert_close(out.sums, expected.sums, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-4)
    assert grad.abs().sum() > 0


def test_next_token_logprobs_with_a_shared_prefix(tiny_llama, tiny_tokenizer):
    system = "Classify the question into one of the categories and answer with its name only."
    prompts = [Prompt.chat(q, system=system) for q in QUESTIONS]
    shared = HFBackend(tiny_llama, tiny_tokenizer, progress=False, min_shared_prefix=8).next_token_logprobs(prompts)
    plain = HFBackend(tiny_llama, tiny_tokenizer, progress=False, min_shared_prefix=0).next_token_logprobs(prompts)
    torch.testing.assert_close(shared, plain, atol=1e-4, rtol=1e-5)
