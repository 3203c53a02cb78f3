"""One generation interface with two backends.

* ``HFBackend`` — any transformers causal LM, CPU or GPU: left-padded batches sorted by length, greedy or seeded
  sampling, stop strings, eos; a prompt repeated in a batch (several samples per prompt) is prefilled once. ``set_weights`` points named parameters at the given tensors (SVF experts,
  adapted weights) and keeps the replaced original tensors, so switching and restoring copy nothing and the base
  comes back bit-identical without a reload. The given tensors must not be modified while they are set.
* ``VLLMBackend`` — optional (``pip install 't2cli[vllm]'``, CUDA only), for fast evaluation and models larger
  than one GPU (``tensor_parallel_size``). Weights are pushed to every worker through ``LLM.collective_rpc``
  calling a method of ``VLLMWorkerExtension`` (installed with ``worker_extension_cls``), which runs the model's own
  ``load_weights`` (so HF names, fused qkv/gate_up and tensor-parallel sharding are handled by vLLM). Calling a
  method by name keeps vLLM's default multiprocess V1 engine and needs no insecure (cloudpickle) serialization;
  CPU tensors travel through vLLM's msgpack encoder.

``set_weights(w)`` always means "base weights with ``w`` applied": names replaced by an earlier call and absent
from ``w`` are restored first. ``set_weights(None)`` restores the base model bit-identically.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from t2cli.errors import BackendError, ConfigError

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]

VLLM_HINT = "vLLM is not installed: pip install 't2cli[vllm]' (needs a CUDA GPU)"


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings shared by every backend (temperature 0 = greedy)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    batch_size: int = 8

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens={self.max_new_tokens} (use >= 1)")
        if self.temperature < 0:
            problems.append(f"temperature={self.temperature} (use >= 0; 0 = greedy)")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p={self.top_p} (use 0 < top_p <= 1)")
        if self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size} (use >= 1)")
        if problems:
            raise ConfigError("bad generation settings: " + "; ".join(problems))
        if isinstance(self.stop, str) or not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", (self.stop,) if isinstance(self.stop, str) else tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` at the earliest occurrence of any stop string (the stop string itself is dropped)."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


class Backend(ABC):
    """Generate completions for chat prompts; swap named weights without reloading."""

    @abstractmethod
    def generate(
        self, prompts: Sequence[Any], settings: GenerationSettings, progress: Progress | None = None
    ) -> list[str]:
        """One completion per prompt, in order. A prompt is chat messages or an already rendered string."""

    @abstractmethod
    def set_weights(self, weights: Mapping[str, Any] | None) -> None:
        """Base weights with ``weights`` (HF parameter names -> tensors) applied; ``None`` restores the base."""


# --------------------------------------------------------------------------------------------------- HF backend


class HFBackend(Backend):
    """transformers backend: batched ``model.generate`` with left padding, CPU or GPU."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        if tokenizer is None:
            raise BackendError("the HF backend needs a tokenizer: pass tokenizer= or a model spec to make_backend")
        self.model = model
        self.tokenizer = copy.deepcopy(tokenizer)  # padding side and pad token are ours to change, not the caller's
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._params = dict(model.named_parameters(remove_duplicate=False))
        self._base: dict[str, Any] = {}  # name -> the original tensor of each replaced parameter
        self.share_prompts = True  # repeated prompts in a batch are prefilled once (see _generate_shared)

    # -- prompts
    def render(self, prompt: Any) -> str:
        """Chat messages -> text through the chat template (with the generation prompt); strings pass through."""
        if isinstance(prompt, str):
            return prompt
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise BackendError("this tokenizer has no chat template: pass rendered strings or use an instruct model")
        return self.tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)

    def _eos_ids(self) -> list[int]:
        ids = set()
        for src in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(src, int):
                ids.add(src)
            elif src:
                ids.update(int(i) for i in src)
        return sorted(ids)

    def _generation_config(self, settings: GenerationSettings) -> Any:
        from transformers import GenerationConfig

        kw: dict[str, Any] = dict(
            max_new_tokens=settings.max_new_tokens,
            do_sample=not settings.greedy,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self._eos_ids(),
            repetition_penalty=1.0,  # explicit neutral values: unset fields would inherit the model's defaults
            no_repeat_ngram_size=0,
        )
        if not settings.greedy:
            kw.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        if settings.stop:
            kw["stop_strings"] = list(settings.stop)
        return GenerationConfig(**kw)

    def generate(
        self, prompts: Sequence[Any], settings: GenerationSettings, progress: Progress | None = None
    ) -> list[str]:
        import torch

        texts = [self.render(p) for p in prompts]
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: less padding
        gen_config = self._generation_config(settings)
        device = next(self.model.parameters()).device
        out: list[str | None] = [None] * len(ids)
        for b, start in enumerate(range(0, len(order), settings.batch_size)):
            idx = order[start : start + settings.batch_size]
            unique = list(dict.fromkeys(tuple(ids[i]) for i in idx))
            with torch.inference_mode(), self._rng(settings.seed + b, device, settings.greedy):
                if self.share_prompts and len(unique) < len(idx) and min(len(u) for u in unique) > 1:
                    seqs, width = self._generate_shared(unique, [unique.index(tuple(ids[i])) for i in idx],
                                                        gen_config, settings, device)
                else:
                    batch = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(device)
                    seqs = self.model.generate(
                        **batch, generation_config=gen_config, tokenizer=self.tokenizer if settings.stop else None
                    )
                    width = batch["input_ids"].shape[1]
            new = seqs[:, width:]
            for i, text in zip(idx, self.tokenizer.batch_decode(new, skip_special_tokens=True)):
                out[i] = truncate_at_stop(text, settings.stop)
            if progress is not None:
                progress(len(idx))
        return out  # type: ignore[return-value]

    def _generate_shared(self, unique: list, row_of: list[int], gen_config: Any, settings: GenerationSettings,
                         device: Any) -> tuple[Any, int]:
        """Generate for rows that repeat a few distinct prompts (several samples per prompt): the distinct prompts
        are prefilled once (all but their last token), the KV cache is copied out to the rows, and ``generate``
        continues from it. The same tokens as generating every row from scratch; the prompt runs once per
        distinct prompt instead of once per sample."""
        import inspect

        import torch
        from transformers import DynamicCache

        first = self.tokenizer.pad({"input_ids": [list(u) for u in unique]}, return_tensors="pt").to(device)
        ids, mask = first["input_ids"], first["attention_mask"]
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as generate() derives them
        cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        cache = DynamicCache(config=self.model.config)
        self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                   use_cache=True, **{cache_kw: cache})
        rows = torch.tensor(row_of, device=device)
        cache.reorder_cache(rows)
        seqs = self.model.generate(input_ids=ids[rows], attention_mask=mask[rows], generation_config=gen_config,
                                   tokenizer=self.tokenizer if settings.stop else None, **{cache_kw: cache})
        return seqs, ids.shape[1]

    @staticmethod
    def _rng(seed: int, device: Any, greedy: bool):
        """Seed sampling per batch without disturbing the caller's global RNG state."""
        import torch

        if greedy:
            return contextlib.nullcontext()
        devices = [device] if device.type == "cuda" else []

        @contextlib.contextmanager
        def ctx():
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                yield

        return ctx()

    # -- weights
    def set_weights(self, weights: Mapping[str, Any] | None) -> None:
        import torch

        weights = dict(weights or {})
        unknown = [n for n in weights if n not in self._params]
        if unknown:
            raise BackendError(f"unknown parameter name(s) {unknown[:3]}: use names from model.named_parameters()")
        for name, t in weights.items():
            if tuple(t.shape) != tuple(self._params[name].shape):
                raise BackendError(
                    f"shape {tuple(t.shape)} for {name} does not match the model's {tuple(self._params[name].shape)}"
                )
        # Swap storages instead of copying values: a switch between cached experts costs a pointer per matrix,
        # and restoring hands back the original storage itself, so the base weights are bit-identical.
        with torch.no_grad():
            for name in [n for n in self._base if n not in weights]:  # restore what the new set leaves alone
                self._params[name].data = self._base.pop(name)
            for name, t in weights.items():
                p = self._params[name]
                if name not in self._base:
                    self._base[name] = p.data
                p.data = t.detach().to(device=p.device, dtype=p.dtype)
        logger.debug("replaced %d parameter(s); %d base tensors held", len(weights), len(self._base))

    @property
    def replaced(self) -> tuple[str, ...]:
        """Names currently differing from the base model (their original tensors are held for restoring)."""
        return tuple(self._base)


# ------------------------------------------------------------------------------------------------- vLLM backend


class VLLMWorkerExtension:
    """Mixed into every vLLM worker (``worker_extension_cls``); called through ``LLM.collective_rpc``."""

    def t2_load_weights(self, weights: list) -> int:
        model = self.model_runner.get_model() if hasattr(self.model_runner, "get_model") else self.model_runner.model
        model.load_weights(weights=[(name, t) for name, t in weights])
        return len(weights)


def _require_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise BackendError(VLLM_HINT) from exc
    import torch

    if not torch.cuda.is_available():
        raise BackendError("the vLLM backend needs a CUDA GPU and none is visible: use --backend hf")
    return vllm


class VLLMBackend(Backend):
    """vLLM backend (GPU). Base copies of replaced weights are read from the checkpoint and kept on CPU."""

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        **llm_kwargs: Any,
    ) -> None:
        vllm = _require_vllm()
        self.model_path = str(model_path)
        self.llm = vllm.LLM(
            model=self.model_path,
            dtype=dtype or "auto",
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            worker_extension_cls=f"{__name__}.VLLMWorkerExtension",
            **llm_kwargs,
        )
        self._sampling_params = vllm.SamplingParams
        self._base: dict[str, Any] = {}

    def generate(
        self, prompts: Sequence[Any], settings: GenerationSettings, progress: Progress | None = None
    ) -> list[str]:
        sp = self._sampling_params(
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_tokens=settings.max_new_tokens,
            stop=list(settings.stop) or None,
            seed=settings.seed,
        )
        out: list[str | None] = [None] * len(prompts)
        chats = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        texts = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        if chats:  # vLLM schedules the whole list itself; batch_size does not apply
            res = self.llm.chat([list(prompts[i]) for i in chats], sp, use_tqdm=False, add_generation_prompt=True)
            for i, r in zip(chats, res):
                out[i] = r.outputs[0].text
        if texts:
            res = self.llm.generate([prompts[i] for i in texts], sp, use_tqdm=False)
            for i, r in zip(texts, res):
                out[i] = r.outputs[0].text
        if progress is not None:
            progress(len(prompts))
        return out  # type: ignore[return-value]

    def checkpoint_tensors(self, names: Sequence[str]) -> dict[str, Any]:
        """Original tensors for ``names`` from the checkpoint's safetensors files (HF names)."""
        from pathlib import Path

        from safetensors import safe_open

        root = Path(self.model_path)
        if not root.is_dir():
            from huggingface_hub import snapshot_download

            root = Path(snapshot_download(self.model_path, allow_patterns=["*.safetensors", "*.json"]))
        found: dict[str, Any] = {}
        for f in sorted(root.glob("*.safetensors")):
            with safe_open(str(f), framework="pt") as fh:
                for n in set(names) & set(fh.keys()):
                    found[n] = fh.get_tensor(n)
        missing = [n for n in names if n not in found]
        if missing:
            raise BackendError(f"{missing[:3]} not found in the safetensors files of {root}: check the parameter names")
        return found

    def _push(self, weights: Mapping[str, Any]) -> None:
        payload = [(n, t.detach().to("cpu").contiguous()) for n, t in weights.items()]
        self.llm.collective_rpc("t2_load_weights", args=(payload,))
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights

    def set_weights(self, weights: Mapping[str, Any] | None) -> None:
        weights = dict(weights or {})
        new = [n for n in weights if n not in self._base]
        if new:
            self._base.update(self.checkpoint_tensors(new))
        restore = {n: self._base.pop(n) for n in list(self._base) if n not in weights}
        if restore:
            self._push(restore)
        if weights:
            self._push(weights)


# ------------------------------------------------------------------------------------------------------ factory


def make_backend(
    name: str,
    model_spec_or_model: Any,
    tokenizer: Any = None,
    *,
    device: str | None = None,
    dtype: Any = None,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.85,
) -> Backend:
    """Build a backend from a model spec (str/None), a ``models.load_model`` result, or a loaded HF model.

    ``"hf"`` runs the model in this process; ``"vllm"`` needs a path or hub id (a GGUF spec is converted once
    by ``t2cli.models``) and spreads a large model over ``tensor_parallel_size`` GPUs.
    """
    obj = model_spec_or_model
    if name == "hf":
        if obj is None or isinstance(obj, str):
            from t2cli import models

            obj = models.load_model(obj, device=device, dtype=dtype if isinstance(dtype, str) else None)
        if hasattr(obj, "tokenizer") and hasattr(obj, "model"):  # models.LoadedModel
            obj, tokenizer = obj.model, tokenizer or obj.tokenizer
        if dtype is not None and not isinstance(dtype, str):
            obj = obj.to(dtype=dtype)
        if device is not None:
            obj = obj.to(device)
        return HFBackend(obj, tokenizer)
    if name == "vllm":
        _require_vllm()
        if obj is None or isinstance(obj, str):
            from t2cli import models

            path = models.local_path(models.resolve(obj))
        else:
            path = getattr(obj, "path", None) or getattr(getattr(obj, "config", None), "_name_or_path", None)
            if not path:
                raise BackendError("the vLLM backend needs a model path or hub id, not an in-memory model")
        vdtype = dtype if dtype is None or isinstance(dtype, str) else str(dtype).removeprefix("torch.")
        return VLLMBackend(
            str(path),
            dtype=vdtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
        )
    raise ConfigError(f"unknown backend {name!r}: use 'hf' or 'vllm'")
