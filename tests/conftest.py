"""Shared fixtures: tiny random models of several architectures and a tiny tokenizer with a chat template.

Nothing here downloads anything; every model is built from a config with hidden size <= 64 and 2 layers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports huggingface_hub (it reads these once, at import): tests never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "The answer is 42. What is 2 + 3? It is 5. Question: which choice is correct? A B C D E",
    "def add(a, b):\n    return a + b\nassert add(1, 2) == 3\n",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "Let x = 3. Then \\boxed{9} is x^2. #### 72 The final answer is 18.",
    "math code reasoning others Answer with one word. 0 1 2 3 4 5 6 7 8 9",
]


def build_tokenizer():
    """A byte-level BPE tokenizer (vocab ~300) with ChatML specials and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


TINY_ARCHS = ("llama", "mistral", "qwen2", "phi3", "gemma")


def build_model(arch: str, vocab_size: int, seed: int = 0, num_layers: int = 2, hidden: int = 32):
    """A tiny random causal LM of the given family (float32, eval mode)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers import GemmaConfig, LlamaConfig, MistralConfig, Phi3Config, Qwen2Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    cfg_cls = {
        "llama": LlamaConfig,
        "mistral": MistralConfig,
        "qwen2": Qwen2Config,
        "phi3": Phi3Config,
        "gemma": GemmaConfig,
    }[arch]
    if arch == "gemma":
        common["head_dim"] = hidden // 4
    if arch == "phi3":
        common["pad_token_id"] = 0
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg_cls(**common), dtype=torch.float32)
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tiny_tokenizer):
    """Saved tiny models, one folder per architecture: {arch: Path}."""
    root = tmp_path_factory.mktemp("tiny_models")
    out = {}
    for seed, arch in enumerate(TINY_ARCHS):
        model = build_model(arch, vocab_size=len(tiny_tokenizer), seed=seed)
        path = root / arch
        model.save_pretrained(path)
        tiny_tokenizer.save_pretrained(path)
        out[arch] = path
    return out


@pytest.fixture
def tiny_llama(tiny_tokenizer):
    return build_model("llama", vocab_size=len(tiny_tokenizer)), tiny_tokenizer


@pytest.fixture
def one_thread():
    """Tiny tensors: extra OpenMP threads only contend (about 3x slower on 2 cores)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own t2 home so caches never leak between tests or into the user's home."""
    monkeypatch.setenv("T2_HOME", str(tmp_path / "t2home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    yield


SHARED_DATA = Path(os.environ.get("T2_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


@pytest.fixture(scope="session")
def shared_data_dir():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA}")
    return SHARED_DATA
