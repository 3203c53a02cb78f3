"""Strategy ``prompt``: the base model itself is asked which expert category a prompt belongs to.

Pass 1 sends the prompt followed by "Is the question above about <expert labels> or others? Answer with one word."
with the **base** weights; the first word of the answer, parsed strictly (``dispatch.parse_label``), picks the expert.
"others" and unparsable answers answer with the base weights — the public reference code instead kept whichever
expert had been loaded last, so a garbled pass 1 silently used an unrelated expert. The paper puts the categories in
a system-style instruction before the question; on SmolLM2-135M that layout made the model answer the question
instead (0% parseable), hence the question-first layout.
"""

from __future__ import annotations

from typing import Any, Mapping

from .dispatch import OTHERS, Router, parse_label, routing_text

__all__ = ["OTHERS", "parse_label", "routing_text", "prompt_router"]


def prompt_router(backend: Any, model: Any, model_name: str, experts: Mapping[str, Any], svd_cache=None,
                  batch_size: int = 8) -> Router:
    """A router whose pass 1 is the base model answering the adaptation prompt."""
    return Router(backend, model, model_name, experts, "prompt", None, svd_cache, batch_size)
