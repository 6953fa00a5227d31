"""Core types: validation with helpful errors, and small helpers."""
import pytest
import torch

from fishfarm import Logprobs, Message, Prompt, SamplingParams


def test_prompt_builders_and_dict_messages():
    chat = Prompt.chat("hi", system="be brief")
    assert chat.messages == (Message("system", "be brief"), Message("user", "hi"))
    assert Prompt(messages=[{"role": "user", "content": "hi"}]) == Prompt.chat("hi")
    assert Prompt.raw("text").text == "text"
    assert hash(chat) == hash(Prompt.chat("hi", system="be brief"))
    assert not chat.continues_response
    prefixed = Prompt.chat("hi", response_prefix="Sure:")
    assert prefixed.messages[-1] == Message("assistant", "Sure:") and prefixed.continues_response


@pytest.mark.parametrize("kwargs", [{}, {"messages": (Message("user", "a"),), "text": "b"},
                                    {"text": "b", "chat_template": "{{ x }}"}])
def test_invalid_prompts_are_named(kwargs):
    with pytest.raises(ValueError, match="Prompt"):
        Prompt(**kwargs)


def test_sampling_params_validate_and_hash():
    assert SamplingParams().temperature == 0.0 and SamplingParams().max_new_tokens == 512
    assert SamplingParams(stop=["\n"]) == SamplingParams(stop=("\n",))
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)


def test_logprobs_mean_handles_empty_continuations():
    out = Logprobs(torch.tensor([-4.0, 0.0]), torch.tensor([2, 0]), ())
    assert out.mean().tolist() == [-2.0, 0.0]
