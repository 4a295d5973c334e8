"""Whole-model training sharded across a job's devices with FSDP (worker side), for models
whose training state does not fit one GPU.

Every rank loads the model into host memory, then `fully_shard` (PyTorch's FSDP2) gives each
decoder layer, and the rest of the model (embeddings, final norm, head) as one more unit, to
the ranks in equal shards, moving each unit to the GPU as it is sharded: a GPU holds its share
of the weights, gradients and optimiser state, and one unit's whole weights while that unit
runs. On CUDA the shards are fp32 (the optimiser's master weights), gathered in bf16 for the
forward and backward passes, and gradients are reduced in fp32 (FSDP's mixed precision, in
place of `precision.MasterAdamW`); on the CPU (tests) everything is fp32.

The losses reach into the model (the decoder, then the head fused into the loss) instead of
calling its forward, so the two loss functions are registered as forward methods of the root
unit: FSDP gathers its weights around them as it would around `forward`. Gradients are summed
across ranks (not averaged) because each rank's loss is already weighted by its share of the
step's trained tokens, as in the replicated run. Every forward is a collective: every rank
runs the same number of them, a rank with no example of its own scores one at weight zero.

Checkpoints hold whole tensors (`whole_state`): the model as `save_pretrained` writes it and
the optimiser as a single process's, so a paused job resumes on any number of devices.
"""

from __future__ import annotations

import types
from typing import Any

import torch

from tunedeck.backend.trainers.base import TrainingFailure

from .scoring import score, sft_loss

# The part of one GPU's memory that a job's weights, gradients and optimiser state may take
# before "auto" shards them (activations and the loss's chunks need the rest).
AUTO_SHARD_ABOVE = 0.6
# bf16 weights and gradients, fp32 master weights and two AdamW moments.
TRAINING_BYTES_PER_PARAMETER = 2 + 2 + 4 + 8


def wants_sharding(requested: str, training_type: str, parameters: int, device: torch.device, method: str) -> bool:
    """Whether a job on several devices shards its model: as asked, or ("auto") when a whole
    model's training state would take more than `AUTO_SHARD_ABOVE` of one GPU. RFT never
    shards: each rank samples answers of its own length, which FSDP's lockstep cannot follow."""
    if requested == "replicate":
        return False
    if method == "reinforcement":
        if requested == "shard":
            raise TrainingFailure(
                "invalid_request",
                "RFT samples answers with a copy of the model on each device; ask for 'sharding': 'replicate' or 'auto'",
                "tunedeck.sharding",
            )
        return False
    if requested == "shard":
        if training_type != "full":
            raise TrainingFailure(
                "invalid_request",
                "Sharding is for whole-model training; LoRA's adapters are small and replicated on each device "
                "(ask for 'sharding': 'auto' or 'replicate', or 'training_type': 'full')",
                "tunedeck.sharding",
            )
        return True
    if training_type != "full" or device.type != "cuda":
        return False
    memory = torch.cuda.get_device_properties(device).total_memory
    return parameters * TRAINING_BYTES_PER_PARAMETER > AUTO_SHARD_ABOVE * memory


def shard_model(model: Any, device: torch.device, world: int) -> None:
    """Shard `model` (on the CPU, fp32 or bf16) across the `world` ranks in place."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
    from torch.distributed.tensor import DTensor

    from .loading import causal_parts

    mesh = init_device_mesh(device.type, (world,))
    policy = MixedPrecisionPolicy()
    if device.type == "cuda":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    decoder, _ = causal_parts(model)
    for layer in getattr(decoder, "layers", None) or []:
        layer.float()  # one layer at a time: the host never holds the whole model in fp32
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    with torch.no_grad():
        for param in model.parameters():
            if not isinstance(param, DTensor):  # the embeddings, the final norm, the head (tied or not)
                param.data = param.data.float()
    # The root unit reshards after its forward too (FSDP keeps it whole by default): a forward
    # before the optimiser is built (DPO's reference values) must leave the sharded parameters
    # in the model, as the optimiser takes what `parameters()` gives.
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=True)
    for unit in model.modules():
        if hasattr(unit, "set_gradient_divide_factor"):  # an FSDP unit
            unit.set_gradient_divide_factor(1.0)
            unit.set_force_sum_reduction_for_comms(True)
            unit.set_reduce_scatter_unused_params(True)  # the head on a rank whose share trained nothing
    model.tunedeck_sft_loss = types.MethodType(sft_loss, model)
    model.tunedeck_score = types.MethodType(score, model)
    register_fsdp_forward_method(model, "tunedeck_sft_loss")
    register_fsdp_forward_method(model, "tunedeck_score")


def whole_state(tree: Any) -> Any:
    """`tree` (a state dict, nested) with every sharded tensor gathered whole onto the CPU.
    A collective: every rank calls it, on trees of the same shape."""
    from torch.distributed.tensor import DTensor

    if isinstance(tree, DTensor):
        return tree.full_tensor().cpu()
    if isinstance(tree, dict):
        return {key: whole_state(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(whole_state(value) for value in tree)
    return tree


def whole_weights(model: Any) -> dict[str, torch.Tensor]:
    """The model's whole state dict on the CPU, on rank 0 (empty on the others). A collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def shard_optimizer_state(state: dict[str, Any], params: list[torch.nn.Parameter]) -> dict[str, Any]:
    """A single process's AdamW state (whole tensors) laid out as the sharded parameters are:
    each moment shaped like its parameter becomes that parameter's shard. A collective."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    sharded: dict[Any, Any] = {}
    for index, values in state["state"].items():
        param = params[int(index)]
        sharded[index] = {
            name: distribute_tensor(value.to(param.device), param.device_mesh, param.placements)
            if isinstance(param, DTensor) and torch.is_tensor(value) and value.shape == param.shape
            else value
            for name, value in values.items()
        }
    return {**state, "state": sharded}
