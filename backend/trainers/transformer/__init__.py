"""The transformer trainer: open causal language models (Qwen2.5, SmolLM2, Llama...) fine-tuned
with PyTorch + PEFT on the user's GPU, or slowly on the CPU, behind the local backend's API.

Two halves that never share a process:
- `server/` (`catalog.py`, `trainer.py`, `process.py`, `chat.py`, `checkpoints.py`) lives in
  the backend and never imports torch; it finds models on disk and drives workers;
- `worker/` (`main.py` and what it imports: `loading.py`, `encoding.py`, `sft.py`, `dpo.py`,
  `rft.py`, `generation.py`, `chat.py`) runs in a subprocess per job (and one for chat
  completions), so cancelling a job ends its process and frees its memory.

Everything here is optional: `pip install 'tunedeck[train]'` brings torch, transformers and
peft (and gguf, which transformers needs to read `.gguf` models). Without them a job on a
transformer model fails with a message that names that command.
"""

from __future__ import annotations

import importlib.util

INSTALL_COMMAND = "pip install 'tunedeck[train]'"
REQUIRED_PACKAGES = ("torch", "transformers", "peft")


def missing_packages() -> list[str]:
    """The packages of the `train` extra that are not installed (looked up, never imported)."""
    return [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]


def install_hint(missing: list[str]) -> str:
    return f"the transformer trainer needs the optional extra: {INSTALL_COMMAND} (missing: {', '.join(missing)})"
