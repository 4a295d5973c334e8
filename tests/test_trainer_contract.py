"""The engine's contract with trainers (trainers/base.py) and tunedeck's typed job options."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunedeck.backend.trainers.base import StepMetrics, Trainer, TrainingRun
from tunedeck.backend.trainers.ngram.trainer import NgramTrainer
from tunedeck.backend.trainers.options import OptionError, TunedeckOptions, check_options
from tunedeck.backend.trainers.transformer.server.process import SubprocessRun
from tunedeck.backend.trainers.transformer.server.trainer import TransformerTrainer


class MinimalRun(TrainingRun):
    total_steps, steps_per_epoch = 2, 1

    def __init__(self) -> None:
        self.saved: list[Path] = []

    def step(self) -> StepMetrics:
        return StepMetrics(1, 2, 1.0, 0.5)

    def save(self, path: Path) -> None:
        self.saved.append(path)


def test_a_run_that_implements_step_and_save_gets_every_other_capability_by_default(tmp_path):
    run = MinimalRun()
    assert (run.checkpoint_suffix, run.seconds_per_step, run.tokens_per_epoch) == (".npz", None, None)
    assert run.take_notices() == []
    run.suspend(tmp_path / "paused.npz")  # an in-process run just saves where it can continue
    assert run.saved == [tmp_path / "paused.npz"]
    run.close()


def test_the_contract_refuses_a_trainer_or_run_missing_a_required_method():
    class NoSave(TrainingRun):
        def step(self) -> StepMetrics:
            raise NotImplementedError

    class NoStart(Trainer):
        def base_models(self) -> list[str]:
            return []

        def supports(self, method: str) -> bool:
            return True

    with pytest.raises(TypeError, match="save"):
        NoSave()  # type: ignore[abstract]
    with pytest.raises(TypeError, match="start"):
        NoStart()  # type: ignore[abstract]


def test_both_trainers_state_what_the_engine_reads():
    assert issubclass(NgramTrainer, Trainer) and issubclass(TransformerTrainer, Trainer)
    assert issubclass(SubprocessRun, TrainingRun)
    ngram = NgramTrainer()
    assert (ngram.paced, ngram.devices, ngram.catalog) == (True, None, None)  # the engine's shared slots
    assert not ngram.claims("org/model")
    assert TransformerTrainer.paced is False
    assert SubprocessRun.checkpoint_suffix == ""  # checkpoints are folders


def test_options_fill_their_defaults_in_one_place():
    defaults = TunedeckOptions()
    assert defaults.as_json() == {
        "training_type": "auto",
        "lora_rank": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
        "max_length": 2048,
        "max_completion_tokens": 64,
        "device": None,
        "devices": 1,
        "sharding": "auto",
    }
    given = TunedeckOptions.from_json({"training_type": "lora", "lora_rank": 8})
    assert (given.training_type, given.lora_rank, given.lora_alpha) == ("lora", 8, 32)
    assert TunedeckOptions.from_json(None) == defaults


@pytest.mark.parametrize(
    ("raw", "param", "text"),
    [
        ([], "tunedeck", "expected an object"),
        ({"lora_rnak": 8}, "tunedeck.lora_rnak", "Unknown option 'tunedeck.lora_rnak'"),
        ({"lora_rank": 0}, "tunedeck.lora_rank", "an integer from 1 to 1024, got 0"),
        ({"lora_rank": True}, "tunedeck.lora_rank", "got True"),
        ({"lora_dropout": float("nan")}, "tunedeck.lora_dropout", "a number from 0 to 1"),
        ({"device": "tpu"}, "tunedeck.device", "cpu, cuda or cuda:N"),
        ({"sharding": "zero3"}, "tunedeck.sharding", "auto, shard or replicate"),
        ({"sharding": "shard"}, "tunedeck.sharding", "ask for 'devices' of 2 or more"),
        ({"sharding": "shard", "devices": 1}, "tunedeck.sharding", "spreads the model across several GPUs"),
    ],
)
def test_bad_options_name_their_field(raw, param, text):
    with pytest.raises(OptionError) as error:
        check_options(raw)
    assert error.value.param == param and text in error.value.message


def test_good_options_come_back_as_given():
    raw = {"lora_dropout": 0, "device": "cuda:1", "max_length": 512}
    assert check_options(raw) == raw
