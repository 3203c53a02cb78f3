"""HFBackend on a tiny random Llama; the vLLM backend only for its missing-dependency error."""

from __future__ import annotations

import sys

import pytest
import torch

from t2cli.errors import BackendError, ConfigError
from t2cli.generation import GenerationSettings, HFBackend, make_backend, truncate_at_stop

PROMPTS = [
    [{"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "user", "content": "Natalia sold clips to 48 of her friends in April, then half as many in May."}],
    [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "def add(a, b): return a"}],
]


@pytest.fixture
def backend(tiny_llama):
    model, tok = tiny_llama
    return HFBackend(model, tok)


def _logits(backend, text="The answer is 42."):
    ids = backend.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return backend.model(ids).logits.clone()


def test_left_padding_matches_single_prompt(backend, tiny_tokenizer):
    s = GenerationSettings(max_new_tokens=10, batch_size=4)
    batched = backend.generate(PROMPTS, s)
    alone = [backend.generate([p], s)[0] for p in PROMPTS]
    assert batched == alone
    assert all(isinstance(c, str) for c in batched) and any(batched)
    assert tiny_tokenizer.padding_side == "right"  # the caller's tokenizer is untouched


def test_results_keep_input_order_across_batches(backend):
    s = GenerationSettings(max_new_tokens=6, batch_size=2)
    prompts = [PROMPTS[1], PROMPTS[0], PROMPTS[2], PROMPTS[0]]
    seen = []
    out = backend.generate(prompts, s, progress=seen.append)
    assert out[1] == out[3] == backend.generate([PROMPTS[0]], s)[0]
    assert sum(seen) == 4 and len(seen) == 2


def test_string_prompt_equals_rendered_chat(backend):
    s = GenerationSettings(max_new_tokens=8)
    rendered = backend.render(PROMPTS[0])
    assert rendered.endswith("<|im_start|>assistant\n")
    assert backend.generate([rendered], s) == backend.generate([PROMPTS[0]], s)


def test_stop_strings_truncate(backend):
    full = backend.generate(PROMPTS, GenerationSettings(max_new_tokens=16))
    text = next(c for c in full if len(c) > 4)
    i = next(k for k in range(1, len(text)) if text[k].isprintable() and text[k] not in text[:k])
    stop = text[i]
    cut = backend.generate(PROMPTS, GenerationSettings(max_new_tokens=16, stop=(stop,)))
    for f, c in zip(full, cut):
        assert stop not in c
        assert c == truncate_at_stop(f, [stop])
    assert truncate_at_stop("abc####d", ["###", "c#"]) == "ab"


def test_seeded_sampling_is_reproducible(backend):
    s = GenerationSettings(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=7)
    state = torch.random.get_rng_state()
    a = backend.generate(PROMPTS, s)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert backend.generate(PROMPTS, s) == a
    other = backend.generate(PROMPTS, GenerationSettings(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=8))
    assert other != a


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_repeated_prompts_prefilled_once_give_the_same_tokens(arch, temperature, tiny_tokenizer, one_thread):
    """Several samples per prompt: the shared-prefill path produces exactly what generating every row does."""
    from tests.conftest import build_model

    model = build_model(arch, vocab_size=len(tiny_tokenizer))
    with torch.no_grad():  # sharper random weights: a wrong cache or position would change the tokens
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(4)
    backend = HFBackend(model, tiny_tokenizer)
    prompts = [PROMPTS[0]] * 3 + [PROMPTS[1]] * 3 + [PROMPTS[2]]
    s = GenerationSettings(max_new_tokens=12, temperature=temperature, seed=3, batch_size=8)
    calls = []
    real = backend._generate_shared
    backend._generate_shared = lambda *a, **k: calls.append(1) or real(*a, **k)
    shared = backend.generate(prompts, s)
    backend.share_prompts = False
    plain = backend.generate(prompts, s)
    assert calls and shared == plain
    assert len(set(plain[:3])) == (1 if temperature == 0 else 3)  # sampled rows differ from each other


def test_set_weights_changes_output_and_restores_bit_identically(backend):
    s = GenerationSettings(max_new_tokens=10)
    base_out = backend.generate(PROMPTS, s)
    base_logits = _logits(backend)
    before = {n: p.detach().clone() for n, p in backend.model.named_parameters()}
    names = ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight", "lm_head.weight"]
    params = dict(backend.model.named_parameters())
    backend.set_weights({n: params[n].detach() * -3.0 + 0.01 for n in names})
    assert set(backend.replaced) == set(names)  # only replaced tensors are stored
    assert all(backend._base[n].shape == params[n].shape for n in names)
    assert not torch.equal(_logits(backend), base_logits)
    assert backend.generate(PROMPTS, s) != base_out
    backend.set_weights(None)
    assert backend.replaced == ()
    assert torch.equal(_logits(backend), base_logits)
    assert all(torch.equal(p, before[n]) for n, p in backend.model.named_parameters())
    assert backend.generate(PROMPTS, s) == base_out


def test_set_weights_new_set_restores_names_it_leaves_out(backend):
    params = dict(backend.model.named_parameters())
    a, b = "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight"
    orig_a = params[a].detach().clone()
    backend.set_weights({a: torch.zeros_like(params[a]), b: torch.zeros_like(params[b])})
    backend.set_weights({b: torch.ones_like(params[b])})
    assert torch.equal(params[a], orig_a)
    assert torch.equal(params[b], torch.ones_like(params[b]))
    assert backend.replaced == (b,)


def test_set_weights_rejects_unknown_names_and_bad_shapes(backend):
    with pytest.raises(BackendError, match="unknown parameter"):
        backend.set_weights({"nope.weight": torch.zeros(2)})
    with pytest.raises(BackendError, match="does not match"):
        backend.set_weights({"lm_head.weight": torch.zeros(2, 2)})
    assert backend.replaced == ()


def test_settings_validation():
    with pytest.raises(ConfigError, match="temperature"):
        GenerationSettings(temperature=-1)
    assert GenerationSettings(stop=["x"]).stop == ("x",)


def test_make_backend_hf_and_unknown(tiny_llama):
    model, tok = tiny_llama
    assert isinstance(make_backend("hf", model, tok, device="cpu"), HFBackend)
    with pytest.raises(ConfigError, match="unknown backend"):
        make_backend("onnx", model, tok)


def test_vllm_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(BackendError, match=r"pip install 't2cli\[vllm\]'"):
        make_backend("vllm", "some/model")


class _FakeLLM:
    """Stands in for vllm.LLM: records calls, applies pushed weights to a dict keyed by HF names."""

    def __init__(self, **kwargs):
        self.kwargs, self.weights, self.calls = kwargs, {}, []

    def collective_rpc(self, method, args=()):
        self.calls.append(method)
        worker = type("W", (), {})()
        worker.model_runner = type("R", (), {"get_model": lambda _s: self})()
        from t2cli.generation import VLLMWorkerExtension

        return [getattr(VLLMWorkerExtension, method)(worker, *args)]

    def load_weights(self, weights):
        for name, t in weights:
            assert t.device.type == "cpu"
            self.weights[name] = t.clone()

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")

    def chat(self, messages, sp, use_tqdm=False, add_generation_prompt=True):
        self.calls.append(("chat", len(messages), sp))
        return [type("O", (), {"outputs": [type("C", (), {"text": "chat"})()]})() for _ in messages]

    def generate(self, prompts, sp, use_tqdm=False):
        self.calls.append(("generate", len(prompts), sp))
        return [type("O", (), {"outputs": [type("C", (), {"text": "raw"})()]})() for _ in prompts]


def test_vllm_backend_logic_with_a_fake_vllm(monkeypatch, tmp_path, tiny_llama):
    import types

    model, tok = tiny_llama
    model.save_pretrained(tmp_path)
    fake = types.SimpleNamespace(LLM=_FakeLLM, SamplingParams=lambda **kw: kw)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    vb = make_backend("vllm", str(tmp_path), tensor_parallel_size=2)
    assert vb.llm.kwargs["tensor_parallel_size"] == 2
    assert vb.llm.kwargs["worker_extension_cls"] == "t2cli.generation.VLLMWorkerExtension"
    out = vb.generate([PROMPTS[0], "raw text", PROMPTS[1]], GenerationSettings(stop=("\n",), seed=3))
    assert out == ["chat", "raw", "chat"]
    sp = vb.llm.calls[0][2]
    assert sp == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 256, "stop": ["\n"], "seed": 3}

    q, v = "model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight"
    params = dict(model.named_parameters())
    vb.set_weights({q: torch.zeros_like(params[q]), v: torch.ones_like(params[v])})
    assert torch.equal(vb.llm.weights[q], torch.zeros_like(params[q]))
    assert set(vb._base) == {q, v} and "reset_prefix_cache" in vb.llm.calls
    vb.set_weights(None)
    assert torch.equal(vb.llm.weights[q], params[q]) and torch.equal(vb.llm.weights[v], params[v])
    assert vb._base == {}
    with pytest.raises(BackendError, match="not found"):
        vb.set_weights({"model.nope.weight": torch.zeros(1)})


def test_make_backend_accepts_a_loaded_model_record(tiny_llama):
    import types

    model, tok = tiny_llama
    b = make_backend("hf", types.SimpleNamespace(model=model, tokenizer=tok, path="x"))
    assert b.model is model and b.tokenizer.padding_side == "left"


def test_callers_tokenizer_is_not_modified(tiny_llama):
    import copy

    model, tok = tiny_llama
    tok = copy.deepcopy(tok)
    tok.pad_token = None
    b = HFBackend(model, tok)
    assert tok.pad_token is None and tok.padding_side == "right"
    assert b.tokenizer.pad_token == b.tokenizer.eos_token
