"""Money and models agree across screens: the dataset stats view estimates with a model the
profile offers. On a local profile nothing is billed (no provider's price, the training
steps instead); on an OpenAI profile the price table's model and rate, with its date and
source. `y` on the dataset screen copies the file's path. The estimate itself is core's
(`core/datasets/pricing.py`), so the CLI says the same."""

from __future__ import annotations

from conftest import generate_dataset
from textual.widgets import Select
from tui_support import settle

from tunedeck.core.bootstrap import open_service
from tunedeck.core.datasets.models import PRICE_TABLE_DATE
from tunedeck.core.datasets.pricing import LOCAL_NOTE, priced_models, training_estimate
from tunedeck.core.datasets.validate import validate_file
from tunedeck.core.launch.models import ModelChoice
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.messages import ModelsLoaded
from tunedeck.tui.screens.dataset import DatasetScreen
from tunedeck.tui.textshot import screen_text


def openai_profile(paths, monkeypatch) -> None:
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    (paths.config_dir / "config.toml").write_text(
        'default_profile = "work"\n[profiles.work]\nbackend = "openai"\napi_key_env = "WORK_KEY"\n', encoding="utf-8"
    )
    monkeypatch.setenv("WORK_KEY", "sk-test-not-used")


async def stats_of(pilot, path):
    app = pilot.app
    await settle(pilot)
    screen = DatasetScreen(path)
    app.push_screen(screen)
    await settle(pilot)
    await pilot.press("t")
    await settle(pilot)
    return screen


async def test_a_local_profile_charges_nothing_and_offers_its_own_models(paths, tmp_path):
    path = generate_dataset("sft", 60, tmp_path / "train.jsonl")
    app = TunedeckApp(lambda: open_service(paths=paths), poll=False, connect=False)  # the built-in local profile
    async with app.run_test(size=(200, 40)) as pilot:
        screen = await stats_of(pilot, path)
        shown = screen_text(app)
        assert "no charge (local:" in shown and "training steps" in shown
        assert "$" not in shown and "gpt-4.1-mini" not in shown  # no provider's model or price
        select = screen.query_one("#stats-model", Select)
        assert select.is_blank()
        # The profile's models, as the launch form gets them, are the ones offered.
        app.post_message(ModelsLoaded([ModelChoice("tunedeck-ngram", fine_tunable=True, tunedeck=True),
                                       ModelChoice("ft:tunedeck-ngram:local:x:abc", fine_tuned=True),
                                       ModelChoice("a-dpo-only-model", methods=("dpo",))]))
        await settle(pilot)
        assert [value for _, value in select._options if isinstance(value, str)] == ["tunedeck-ngram"]
        assert select.value == "tunedeck-ngram"
        shown = screen_text(app)
        assert "no charge (local:" in shown and "$" not in shown


async def test_an_openai_profile_prices_with_the_table_and_says_which(paths, tmp_path, monkeypatch):
    openai_profile(paths, monkeypatch)
    path = generate_dataset("sft", 60, tmp_path / "train.jsonl")
    app = TunedeckApp(lambda: open_service(paths=paths), poll=False, connect=False)
    async with app.run_test(size=(200, 40)) as pilot:
        screen = await stats_of(pilot, path)
        shown = screen_text(app)
        assert "at $5.00/1M" in shown and "no charge" not in shown  # gpt-4.1-mini, the default
        assert f"price table of {PRICE_TABLE_DATE}" in shown
        select = screen.query_one("#stats-model", Select)
        assert select.value == "gpt-4.1-mini-2025-04-14"
        # Listed models: only those the profile offers (and the table prices) are offered.
        app.post_message(ModelsLoaded([ModelChoice("gpt-4o-mini-2024-07-18", fine_tunable=True), ModelChoice("whisper-1")]))
        await settle(pilot)
        assert [value for _, value in select._options if isinstance(value, str)] == ["gpt-4o-mini-2024-07-18"]
        assert "at $3.00/1M" in screen_text(app)


async def test_y_copies_the_dataset_files_path(paths, tmp_path):
    path = generate_dataset("sft", 20, tmp_path / "train.jsonl")
    app = TunedeckApp(lambda: open_service(paths=paths), poll=False, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.push_screen(DatasetScreen(path))
        await settle(pilot)
        await pilot.press("y")
        assert app.clipboard == str(path.resolve())
        assert [(n.title, n.message) for n in app._notifications][-1] == ("copied the file's path", str(path.resolve()))


def test_the_core_estimate_follows_the_profile(tmp_path):
    path = generate_dataset("sft", 60, tmp_path / "train.jsonl")
    report = validate_file(path, model="gpt-4.1-mini")
    local = training_estimate(report, "tunedeck-ngram", local=True)
    assert local.cost_usd is None and local.usd_per_1m is None and local.cost_text().startswith(LOCAL_NOTE)
    assert local.steps and local.steps > 0
    priced = training_estimate(report, "gpt-4.1-mini", local=False)
    assert priced.usd_per_1m == 5.00 and priced.cost_usd == round(priced.trained_tokens / 1e6 * 5.00, 6)
    assert PRICE_TABLE_DATE in priced.table
    unknown = training_estimate(report, "my-own-model", local=False)
    assert unknown.cost_usd is None and "no price is known for my-own-model" in unknown.cost_text()
    assert priced_models("sft", ["gpt-4o-mini-2024-07-18", "whisper-1"]) == ["gpt-4o-mini-2024-07-18"]
    assert "gpt-4.1-mini-2025-04-14" in priced_models("sft", None)
