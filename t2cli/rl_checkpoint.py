"""Training checkpoints: everything needed to continue a run bit-for-bit on CPU.

``<run_dir>/checkpoint.pt`` holds z, the optimiser and scheduler states, the RNG states of torch, Python and NumPy,
the step, the data-order position, the best validation score and the early-stopping counter. It is written to a
temporary sibling and renamed, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
from pathlib import Path

from .errors import TrainingError
from .paths import temp_path_for

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict:
    import numpy as np
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    import torch

    path = Path(run_dir) / CHECKPOINT
    tmp = temp_path_for(path)
    try:
        torch.save({**state, "rng": rng_state()}, tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(run_dir: Path) -> dict | None:
    """The saved state (RNG restored as a side effect), or None when the run has no checkpoint yet."""
    import torch

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise TrainingError(f"checkpoint {path} is unreadable ({exc}): delete it to start over, or restore a backup") from None
    set_rng_state(state["rng"])
    return state
