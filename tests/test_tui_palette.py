"""The command palette's tunedeck commands (tui/commands.py): what each screen offers, with
its key, derived from the bindings and their check_action; picking one runs it."""

from __future__ import annotations

from tui_support import launch_job, make_app, running_job, settle

from tunedeck.tui.commands import context_commands
from tunedeck.tui.screens.confirm import ConfirmScreen
from tunedeck.tui.screens.dataset import DatasetScreen
from tunedeck.tui.screens.launch import LaunchScreen


def offered(screen) -> dict[str, str]:
    """Title → keys of the commands the palette would offer on `screen` now."""
    commands: dict[str, str] = {}
    for command in context_commands(screen):
        commands.setdefault(command.title, command.key_text)  # the nearest binding's, as a key press
    return commands


async def pick(pilot, query: str) -> None:
    """Open the palette, type `query`, wait for its hits, take the first."""
    from textual.command import CommandList, CommandPalette

    await pilot.press("ctrl+p")
    await settle(pilot)
    assert CommandPalette.is_open(pilot.app)
    await pilot.press(*query)
    palette = pilot.app.screen
    command_list = palette.query_one(CommandList)
    for _ in range(200):  # the palette searches in a task of its own: wait for its hits
        if command_list.option_count:
            break
        await pilot.pause()
    assert command_list.option_count, f"no hit for {query!r}"
    await settle(pilot)
    if command_list.highlighted is None:
        await pilot.press("down")
    await pilot.press("enter")
    await settle(pilot)


async def test_the_dataset_screen_offers_its_actions_with_their_keys_and_launch_runs(paths, sft_file):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        screen = DatasetScreen(sft_file)
        app.push_screen(screen)
        await settle(pilot)
        commands = offered(screen)
        assert commands["Split"] == "s" and commands["Clean copy"] == "w" and commands["Launch"] == "l"
        assert commands["Raw"] == "r, v" and commands["Line"] == ":, ^g" and commands["Issues"] == "i"
        assert commands["Quit"] == "^q, q" and commands["Keys"] == "?, f1"  # the app's keys too
        assert "Next example" not in commands  # cursor moves are not commands
        by_title = {command.title: command for command in context_commands(screen)}
        assert by_title["Split"].help == "Split into train and validation files"

        await pick(pilot, "launch")
        assert isinstance(app.screen, LaunchScreen)


async def test_the_jobs_screen_offers_open_with_enter_though_its_table_takes_the_key(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await launch_job(app, sft_file)
        await app.poll_now()
        await settle(pilot)
        screen = app.screen
        assert screen.focused is not None and "enter" in screen.focused._bindings.key_to_bindings
        commands = offered(screen)
        assert commands["Open"] == "⏎" and commands["New job"] == "n" and commands["Compare"] == "C"
        assert commands["Datasets"] == "d" and commands["Evaluate"] == "E"

        await pick(pilot, "new job")
        assert isinstance(app.screen, LaunchScreen)


async def test_the_job_screen_offers_cancel_and_evaluate_and_leaves_out_what_check_action_refuses(paths, manual_backend, sft_file):
    app = make_app(paths, manual_backend)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await running_job(pilot, manual_backend, sft_file)
        commands = offered(screen)
        assert commands["Cancel job"] == "c" and commands["Evaluate"] == "E" and commands["Pause"] == "P"
        assert "Resume" not in commands  # check_action says no while the job runs
        assert commands["Datasets"] == "d"
        # The app's own Evaluate (E everywhere else) is shadowed by the job's: offered without a key.
        assert [c.key_text for c in context_commands(screen) if c.title == "Evaluate"] == ["E", ""]

        await pick(pilot, "cancel job")
        assert isinstance(app.screen, ConfirmScreen)  # the same question as the c key asks
        await pilot.press("n")
        await settle(pilot)
        assert app.screen is screen and screen.job.status == "running"


async def test_quit_and_keys_are_offered_once_with_their_keys(paths):
    app = make_app(paths, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Quit" not in titles and "Keys" not in titles and "Theme" in titles  # Textual's own, less ours
        commands = offered(app.screen)
        assert "q" in commands.get("Quit", "").split(", ") and "?" in commands.get("Keys", "")
