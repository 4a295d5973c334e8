"""`TransformerTrainer`: the job engine's trainer for transformer models (server side, no torch).

It lists the models the catalog finds, claims any Hugging Face style id (`org/name`) so a
job on a model that is not on disk is created and then fails with `model_not_found` naming
the places searched, and starts one worker process per run. Runs are placed on the
machine's devices (`compute.py`): one job per free GPU at once, N for a job whose
`tunedeck.devices` asks for N, the CPU in turns where there is no GPU; the rest wait in
`queued`. A worker sees only its own GPUs (`CUDA_VISIBLE_DEVICES`). Steps are not paced by
the backend's demo delay (`paced = False`): real training takes its own time.

Options come from the job's `tunedeck` extension field (`trainers/options.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from tunedeck.backend.compute import Device, DevicePool, DeviceRequest, detect_devices, placed_message, placement
from tunedeck.backend.trainers.base import Trainer, TrainingFailure, TrainingSpec
from tunedeck.backend.trainers.options import TunedeckOptions

from .. import install_hint, missing_packages
from .catalog import ModelCatalog, weights_size
from .checkpoints import standalone_base
from .process import SubprocessRun
from .ray_worker import RayCluster

METHODS = ("supervised", "dpo", "reinforcement")


class TransformerTrainer(Trainer):
    paced = False
    catalog: ModelCatalog
    devices: DevicePool | None

    def __init__(
        self,
        catalog: ModelCatalog,
        log_dir: Path,
        env: dict[str, str] | None = None,
        devices: list[Device] | None = None,
        cluster: RayCluster | None = None,
    ) -> None:
        """`devices`: the machine's training devices; None finds them (`compute.detect_devices`).
        `cluster`: a Ray cluster to run on instead (`ray_worker.py`): Ray places the runs."""
        self.cluster = cluster
        if cluster is None:
            self.devices = DevicePool(detect_devices() if devices is None else devices)
        else:
            self.devices = None
            self.max_concurrent_runs = cluster.max_jobs
        self.catalog = catalog
        self.log_dir = log_dir
        self.env = env
        # Called before a run starts: the backend unloads its chat model here, so a training
        # run never shares the GPU with an idle chat model.
        self.before_run: Callable[[], None] = lambda: None

    def base_models(self) -> list[str]:
        return self.catalog.names()

    def model_details(self, model: str) -> dict[str, Any]:
        source = self.catalog.locate(model)
        if source is None:
            return {}
        return {"kind": "open model", "size_bytes": weights_size(source), "origin": source.origin}

    def claims(self, model: str) -> bool:
        return "/" in model and not model.startswith("ft:")

    def supports(self, method: str) -> bool:
        return method in METHODS

    def cluster_info(self) -> dict[str, Any] | None:
        return self.cluster.describe() if self.cluster is not None else None

    def device_request(self, options: TunedeckOptions) -> DeviceRequest:
        if options.device == "cpu" or (options.device or "").startswith("cuda:"):
            return DeviceRequest(named=options.device)
        return DeviceRequest(count=options.devices)

    def start(self, spec: TrainingSpec) -> SubprocessRun:
        missing = missing_packages()
        if missing:
            raise TrainingFailure("trainer_not_installed", f"Cannot train {spec.base_model}: {install_hint(missing)}")
        base = self._base_of(spec)
        self.before_run()
        if self.cluster is not None:
            return self._start_on_cluster(spec, base)
        env, device = placement(spec.devices)
        worker = worker_spec(spec, base)
        if device is not None:
            worker["options"]["device"] = device
        # One process per GPU placed (pretend GPUs count: they train on the CPU); on the CPU,
        # as many processes as `devices` asks for.
        worker["world_size"] = sum(d.is_gpu for d in spec.devices) or spec.options.devices
        run = SubprocessRun(worker, self.log_dir, {**(self.env or {}), **env})
        if spec.devices:
            run.add_notice("info", placed_message(spec.devices))
        return run

    def _start_on_cluster(self, spec: TrainingSpec, base: dict[str, Any]) -> SubprocessRun:
        """A run as Ray actors, one per device the job asks for (`devices`): each with a GPU
        when the job wants GPUs and the cluster has some, else with a CPU."""
        assert self.cluster is not None
        options = spec.options
        worker = worker_spec(spec, base)
        worker["world_size"] = options.devices
        gpus = 0
        if options.device != "cpu" and self.cluster.gpu_count() > 0:
            if options.devices > self.cluster.gpu_count():
                raise TrainingFailure(
                    "invalid_request",
                    f"The job asks for {options.devices} GPUs; the Ray cluster at {self.cluster.address} "
                    f"has {self.cluster.gpu_count()} in all",
                    "tunedeck.devices",
                )
            gpus = options.devices
            worker["options"]["device"] = "cuda"
        else:
            worker["options"]["device"] = "cpu"
        launch = self.cluster.launcher(world=options.devices, gpus_per_rank=1 if gpus else 0)
        return SubprocessRun(worker, self.log_dir, self.env, launch=launch)

    def _base_of(self, spec: TrainingSpec) -> dict[str, Any]:
        """The base model from the catalog; for a job continuing a fine-tuned model, what its
        checkpoint needs when the base has left the catalog since."""
        source = self.catalog.locate(spec.base_model)
        if source is not None:
            return source.as_json()
        if spec.initial_weights is not None:
            fallback = standalone_base(spec.initial_weights, spec.base_model)
            if fallback is not None:
                return fallback
        places = "; ".join(self.catalog.searched())
        raise TrainingFailure(
            "model_not_found",
            f"The model `{spec.base_model}` was not found on this machine (looked in: {places}). "
            "Put a Hugging Face model folder there, or download it with `huggingface-cli download`",
            "model",
        )


def worker_spec(spec: TrainingSpec, base: dict[str, Any]) -> dict[str, Any]:
    hyper = spec.hyperparameters
    return {
        "method": spec.method,
        "base": base,
        "initial_weights": str(spec.initial_weights) if spec.initial_weights else None,
        "training_path": str(spec.training_path),
        "validation_path": str(spec.validation_path) if spec.validation_path else None,
        "hyperparameters": {
            "n_epochs": hyper.n_epochs,
            "batch_size": hyper.batch_size,
            "learning_rate_multiplier": hyper.learning_rate_multiplier,
            **hyper.extra,
        },
        "seed": spec.seed,
        "method_config": spec.method_config,
        "grader_endpoint": list(spec.grader_endpoint) if spec.grader_endpoint else None,
        "options": spec.options.as_json(),
        "job_id": spec.job_id,
        # A crash-recovery checkpoint to continue from; its state file stays for a second crash.
        **({"resume": {"checkpoint": str(spec.resume_from), "keep_state": True}} if spec.resume_from else {}),
    }
