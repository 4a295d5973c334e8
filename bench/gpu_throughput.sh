#!/usr/bin/env bash
# One prepared GPU check for the transformer trainer's speed (issue 22): run from the repository
# root on a CUDA machine that has torch and transformers (no network needed, nothing downloaded).
# Prints the card, the exactness checks, the kernel-level figures per variant and the job-level
# figures; a copy of everything goes to $OUT/gpu_throughput.log when OUT is set.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
export HF_HUB_DISABLE_PROGRESS_BARS=1
if ! python3 -c "import tunedeck.backend" 2>/dev/null; then  # not installed: lay the packages out as installed
    mkdir -p /tmp/tunedeck-path/tunedeck
    cp tunedeck/__init__.py /tmp/tunedeck-path/tunedeck/
    for d in core backend tui cli; do ln -sfn "$PWD/$d" "/tmp/tunedeck-path/tunedeck/$d"; done
    export PYTHONPATH=/tmp/tunedeck-path${PYTHONPATH:+:$PYTHONPATH}
fi
LOG=${OUT:-/tmp}/gpu_throughput.log
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    python3 -c "import inspect; from torch.nn.attention.varlen import varlen_attn; print('varlen_attn', inspect.signature(varlen_attn))" \
        || echo "no torch varlen_attn"
    python3 -c "import time; t = time.perf_counter(); import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
import tunedeck.backend.trainers.transformer.worker.sft
torch.zeros(1, device='cuda'); print(f'worker imports + CUDA context: {time.perf_counter() - t:.2f} s')"
    python3 bench/train_throughput.py --gpu-only --exactness --variants "" || echo "EXACTNESS FAILED"
    python3 bench/train_throughput.py --gpu-only --steps "${STEPS:-10}" \
        --variants "${VARIANTS:-baseline,trainer+sdpa,trainer,trainer+compile,trainer+compile@16}" --job "${JOBS:-full,lora}"
} 2>&1 | tee "$LOG"
