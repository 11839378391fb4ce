"""Configuration lookup (harness.config), `harness config`, `harness init`, the user folders and the version.

The lookup order: --config, $HARNESS_CONFIG, ./device_profiles, the user's config folder, the packaged
defaults; each file on its own. conftest.py points the user folders at empty temporary ones.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

import harness
from harness import config
from harness.binaries import FetchRequest
from harness.commands import main
from harness.convert import require_convert_extra
from harness.errors import MissingExtraError, UsageError
from harness.locations import user_cache_dir, user_config_dir, user_state_dir
from harness.virtual_farm import farm as farm_lib

ONE_TIER = 'schema_version = 1\ntiers = ["lab"]\n[[rules]]\nid = "everything"\ntier = "lab"\n'


def _write(folder: Path, name: str, text: str = "schema_version = 1\n") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_without_any_configuration_the_packaged_defaults_apply(tmp_path: Path):
    resolved = config.resolve(environ={"XDG_CONFIG_HOME": str(tmp_path / "empty")}, cwd=tmp_path)
    packaged = config.packaged_defaults()
    assert [s.source for s in resolved.settings] == [config.Source.PACKAGED] * 3
    assert resolved.farm.path == packaged / "farm.toml"
    assert resolved.tiers.path == packaged / "tiers.toml"
    assert sorted(p.name for p in resolved.virtual_profiles.path.glob("*.toml")) == [
        "gpu_galaxy_a54.toml",
        "high_pixel_8_pro.toml",
        "low_galaxy_a03.toml",
        "mid_nothing_phone_1.toml",
    ]
    # Inside the package, never beside it: an installed wheel has no checkout around it.
    assert packaged == Path(harness.__file__).resolve().parent / "defaults"


def test_each_file_comes_from_the_first_folder_that_has_it(tmp_path: Path):
    option, env, user = tmp_path / "option", tmp_path / "env", tmp_path / "xdg" / "tflite-farm"
    lab = tmp_path / "lab" / "device_profiles"
    _write(option, "tiers.toml", ONE_TIER)
    _write(env, "farm.toml")
    _write(env, "tiers.toml", ONE_TIER)
    _write(lab, "farm.toml")
    (user / "virtual").mkdir(parents=True)
    _write(lab, "virtual/README.md", "a folder counts as virtual/ whatever it holds")
    environ = {"HARNESS_CONFIG": str(env), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}

    resolved = config.resolve(option, environ, cwd=tmp_path / "lab")
    assert (resolved.tiers.source, resolved.tiers.path) == (config.Source.OPTION, option / "tiers.toml")
    assert (resolved.farm.source, resolved.farm.path) == (config.Source.ENVIRONMENT, env / "farm.toml")
    assert (resolved.virtual_profiles.source, resolved.virtual_profiles.path) == (config.Source.LAB, lab / "virtual")
    assert resolved.binaries_lock == env / "binaries.lock"  # beside the farm.toml in effect
    assert [f.source for f in resolved.folders] == list(config.Source)

    without_option_or_env = config.resolve(environ={"XDG_CONFIG_HOME": str(tmp_path / "xdg")}, cwd=tmp_path / "lab")
    assert without_option_or_env.farm.source is config.Source.LAB
    assert without_option_or_env.tiers.source is config.Source.PACKAGED
    (lab / "virtual" / "README.md").unlink()
    (lab / "virtual").rmdir()
    assert config.resolve(environ=environ, cwd=tmp_path / "lab").virtual_profiles.path == user / "virtual"


def test_a_named_folder_that_is_not_there_is_an_error_not_a_fallback(tmp_path: Path):
    with pytest.raises(UsageError, match="--config.*does not exist.*harness init"):
        config.resolve(tmp_path / "typo", environ={}, cwd=tmp_path)
    with pytest.raises(UsageError, match=r"\$HARNESS_CONFIG.*does not exist"):
        config.resolve(environ={"HARNESS_CONFIG": str(tmp_path / "typo")}, cwd=tmp_path)


def test_init_writes_commented_copies_and_keeps_a_labs_files(tmp_path: Path):
    result = config.init(tmp_path / "lab")
    assert [p.name for p in result.written] == ["farm.toml", "tiers.toml"] and result.kept == ()
    for name in ("farm.toml", "tiers.toml"):
        text = (tmp_path / "lab" / name).read_text(encoding="utf-8")
        assert text.startswith("# Written by `harness init`")
        assert text.endswith((config.packaged_defaults() / name).read_text(encoding="utf-8"))
    (tmp_path / "lab" / "tiers.toml").write_text(ONE_TIER, encoding="utf-8")
    again = config.init(tmp_path / "lab")
    assert again.written == () and [p.name for p in again.kept] == ["farm.toml", "tiers.toml"]
    assert (tmp_path / "lab" / "tiers.toml").read_text(encoding="utf-8") == ONE_TIER
    assert [p.name for p in config.init(tmp_path / "lab", force=True).written] == ["farm.toml", "tiers.toml"]
    with pytest.raises(UsageError, match="is a file"):
        config.init(tmp_path / "lab" / "farm.toml")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_init_then_devices_in_a_new_folder_uses_that_folders_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`harness init`, an edit, and `harness devices` asks the adb server the new farm.toml names."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["init"]).exit_code == 0
    shown = json.loads(runner.invoke(main, ["config", "--json"]).stdout)
    assert shown["settings"]["farm.toml"] == {
        "path": str(tmp_path / "device_profiles" / "farm.toml"),
        "source": "./device_profiles",
    }
    assert shown["settings"]["tiers.toml"]["source"] == "./device_profiles"
    assert shown["settings"]["virtual"]["source"] == "packaged defaults"
    assert shown["folders"] == {
        "state": os.environ["HARNESS_STATE_DIR"],  # conftest's private folders
        "cache": os.environ["HARNESS_CACHE_DIR"],
        "results": str(tmp_path / "results"),
    }

    port = _free_port()  # nothing listens there: the answer names the server this folder's farm.toml lists
    farm_toml = tmp_path / "device_profiles" / "farm.toml"
    farm_toml.write_text(
        farm_toml.read_text(encoding="utf-8") + f'\n[[servers]]\nhost = "127.0.0.1"\nport = {port}\n', encoding="utf-8"
    )
    listed = runner.invoke(main, ["devices", "--json"])
    assert f"127.0.0.1:{port}" in listed.stderr


def test_the_config_option_lasts_one_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "lab", "tiers.toml", ONE_TIER)
    runner = CliRunner()
    shown = runner.invoke(main, ["--config", str(tmp_path / "lab"), "config"])
    assert shown.exit_code == 0
    assert f"tiers.toml\t{tmp_path / 'lab' / 'tiers.toml'}\t(--config)" in shown.stdout
    assert config.explicit_config_dir() is None  # reset when the command ended
    assert config.resolve().tiers.source is config.Source.PACKAGED
    missing = runner.invoke(main, ["--config", str(tmp_path / "nope"), "devices"])
    assert missing.exit_code == 2 and "harness init" in missing.stderr


def test_binaries_fetch_never_edits_the_packaged_farm_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="packaged default.*harness init"):
        FetchRequest().lock_path  # noqa: B018 - the property resolves the farm file
    config.init()
    assert FetchRequest().lock_path == tmp_path / "device_profiles" / "binaries.lock"


def test_user_folders_follow_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert user_state_dir({"HARNESS_STATE_DIR": str(tmp_path / "s")}) == tmp_path / "s"
    assert user_state_dir({"XDG_STATE_HOME": str(tmp_path / "x")}) == tmp_path / "x" / "tflite-farm"
    assert user_config_dir({"XDG_CONFIG_HOME": str(tmp_path / "c")}) == tmp_path / "c" / "tflite-farm"
    assert user_cache_dir({"HARNESS_CACHE_DIR": str(tmp_path / "k")}) == tmp_path / "k"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if sys.platform == "linux":
        assert user_state_dir({}) == tmp_path / "home" / ".local" / "state" / "tflite-farm"
        assert user_config_dir({}) == tmp_path / "home" / ".config" / "tflite-farm"


def test_the_farm_state_lives_in_the_user_state_folder_not_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    assert farm_lib.resolve_state_dir() == tmp_path / "state" / "farm"
    assert farm_lib.resolve_state_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_the_version_comes_from_the_package_metadata():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"harness, version {metadata.version('tflite-farm')}"
    assert metadata.version("tflite-farm") == harness.__version__


def test_a_missing_extra_names_the_install_command():
    with pytest.raises(MissingExtraError) as raised:
        require_convert_extra("'harness convert'", ("tensorflow", "no_such_module_for_this_test"))
    assert "no_such_module_for_this_test" in str(raised.value)
    assert "tensorflow," not in str(raised.value)  # only what is missing
    assert "tflite-farm[convert]" in str(raised.value) and "pipx install" in str(raised.value)
