"""The generation registry (search/generations.py): which generation a model reads, and one writer at a time."""

from __future__ import annotations

import pytest

from search.generations import (
    ConcurrentMigrationError,
    FileRegistry,
    Generation,
    MigrationState,
    Registry,
    generation_name,
)


def test_a_model_reads_its_own_generation_and_an_unknown_one_the_active():
    old, new, other = Generation("", "m/old", 512), Generation(generation_name("m/new"), "m/new", 128), "m/other"
    building = Registry(active=old, migration=MigrationState("x", new))
    assert building.generation_for("m/old") is old and building.generation_for(None) is old
    assert building.generation_for("m/new") is new  # a process already on the new encoder writes there
    assert building.generation_for(other) is old  # whose store then refuses the model, with its own message
    switched = Registry(active=new, previous=old)
    assert switched.generation_for("m/old") is old and switched.generation_for("m/new") is new
    assert Registry(active=new).generation_for("m/old") is new  # finished: the old model is refused there
    assert generation_name("m/new") == generation_name("m/new") != generation_name("m/newer")
    assert generation_name("open_clip/ViT-B-32/laion2b").startswith("g-") and generation_name("x").islower()


def test_file_registry_round_trips_and_refuses_a_concurrent_writer(tmp_path):
    a, b = FileRegistry(tmp_path), FileRegistry(tmp_path)
    assert a.read() is None and b.read() is None
    reg = Registry(active=Generation("", "m/old", 4, {"model": "ViT-B-32"}),
                   migration=MigrationState("id1", Generation("g-1", "m/new", 8), cursor="ab", failed={"cd": "gone"}))
    a.write(reg)
    with pytest.raises(ConcurrentMigrationError, match="another migration"):
        b.write(reg)  # b read before a wrote
    again = b.read()
    assert again == reg and again.migration.failed == {"cd": "gone"}
    b.write(again)
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file and a rename


def test_only_one_migrating_process_holds_the_lock(tmp_path):
    with FileRegistry(tmp_path).lock():
        with pytest.raises(ConcurrentMigrationError, match="holds"):
            with FileRegistry(tmp_path).lock():
                pass
    with FileRegistry(tmp_path).lock():  # released with the first
        pass


def test_migrate_command_refuses_clearly_and_changes_nothing(cli_env, tmp_path):
    from click.testing import CliRunner

    from ops.cli.main import cli

    def run(*args):
        r = CliRunner().invoke(cli, list(args))
        return r.exit_code, r.output + (r.stderr or "")

    code, out = run("migrate")
    assert code == 2 and "name the new model" in out
    code, out = run("migrate", "--rollback")
    assert code == 1 and "no previous generation" in out
    code, out = run("migrate", "--abort")
    assert code == 1 and "no migration is under way" in out
    bad = tmp_path / "not-a-checkpoint"
    bad.mkdir()
    (bad / "open_clip_config.json").write_text("{}")
    code, out = run("migrate", "--model", "sludge-tiny", "--pretrained", str(bad))
    assert code == 1 and "not-a-checkpoint" in out
    assert not (tmp_path / "data" / "history" / "generations.json").exists()
    code, out = run("migrate", "--status", "--json")
    assert code == 0 and '"migration": null' not in out and '"state": null' in out
