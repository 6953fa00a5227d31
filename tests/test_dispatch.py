import pytest
import torch

from fishfarm.types import GenerationResult, Logprobs
from t2lib.methods.dispatch import PromptDispatcher, confusion


class FakeBackend:
    """Answers generation with fixed texts and prefers one category's continuation."""

    def __init__(self, texts=(), prefer="math"):
        self.texts, self.prefer, self.seen = list(texts), prefer, []

    def generate(self, requests, *, progress=None):
        self.seen += requests
        return [GenerationResult(t, (), "eos", 0) for t in self.texts]

    def logprobs(self, requests, *, grad=False):
        self.seen += requests
        sums = torch.tensor([0.0 if r.continuation.startswith(self.prefer) else -5.0 for r in requests])
        return Logprobs(sums, torch.ones(len(requests), dtype=torch.long), ())


def test_generate_mode_reads_the_box_and_falls_back_to_other():
    backend = FakeBackend(["math}", " Code }", "I cannot classify", "poetry}"])
    labels = PromptDispatcher(backend, mode="generate").classify(["q1", "q2", "q3", "q4"])
    assert labels == ["math", "code", "other", "other"]
    assert backend.seen[0].prompt.messages[-1].content == "Classification: \\boxed{"  # primed answer
    assert "Question: q1" in backend.seen[0].prompt.messages[1].content


def test_choice_mode_takes_the_most_likely_category():
    backend = FakeBackend(prefer="reasoning")
    assert PromptDispatcher(backend).classify(["a", "b"]) == ["reasoning", "reasoning"]
    assert [r.continuation for r in backend.seen[:4]] == ["code}", "math}", "reasoning}", "other}"]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown dispatch mode 'vote'"):
        PromptDispatcher(FakeBackend(), mode="vote")


def test_confusion_counts():
    m = confusion(["math", "code", "code"], ["math", "math", "code"], rows=["math", "code"], cols=["math", "code", "other"])
    assert m.tolist() == [[1, 0, 0], [1, 1, 0]]


def test_choice_mode_on_a_real_backend(tiny_llama, tiny_tokenizer):
    from fishfarm import HFBackend
    labels = PromptDispatcher(HFBackend(tiny_llama, tiny_tokenizer, progress=False)).classify(["What is 2+2?"])
    assert labels[0] in ("code", "math", "reasoning", "other")
