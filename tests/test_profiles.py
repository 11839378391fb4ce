"""Tier rules and farm configuration: the packaged defaults (harness/defaults/)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from fixture_paths import DEVICE_DUMPS

from harness.config import packaged_defaults
from harness.errors import InputFileError, SchemaError
from harness.phone.facts import DeviceInfo, device_info_from
from harness.phone.profiles import AdbServer, load_farm, load_tiers, soc_identities

DUMPS = DEVICE_DUMPS
VIRTUAL = packaged_defaults() / "virtual"
GIB = 2**30


def dump(name: str) -> str:
    text = (DUMPS / name).read_text(encoding="utf-8")
    return text.split("# ---- verbatim text below this line ----\n", 1)[1]


@pytest.fixture(scope="module")
def rules():
    return load_tiers()


@pytest.mark.parametrize(
    ("getprop", "meminfo", "tier", "rule"),
    [
        # Tensor G3, 12 GiB from ro.boot.ddr_size, SDK 36
        ("getprop_01_google_pixel8pro_husky_tensor_g3.txt", "", "high", "high-flagship-soc"),
        # no ro.soc.model; ro.chipname=exynos7580
        ("getprop_03_samsung_galaxy_s5neo_sm-g903f_exynos7580.txt", "", "low", "low-entry-soc"),
        # Android 3.2, board 'tegra', 1 GB
        (
            "getprop_06_asus_tf201_tegra3_android321_full.txt",
            "meminfo_01_asus_tf201_tegra3_1GB.txt",
            "low",
            "low-entry-soc",
        ),
    ],
)
def test_real_dumps_get_their_tier(rules, getprop: str, meminfo: str, tier: str, rule: str) -> None:
    device = device_info_from("serial", dump(getprop), dump(meminfo) if meminfo else "", "", "")
    got = rules.classify(device)
    assert (got.tier, got.rule_id) == (tier, rule)


def virtual_device(profile: Path) -> DeviceInfo:
    data = tomllib.loads(profile.read_text())
    getprop = "\n".join(f"[{key}]: [{value}]" for key, value in data["props"].items())
    meminfo = f"MemTotal: {data['memory']['ram_bytes'] // 1024} kB\n"
    return device_info_from(profile.stem, getprop, meminfo, "", "")


def test_every_virtual_profile_lands_in_the_tier_its_name_claims(rules) -> None:
    expected = {
        "high_pixel_8_pro": ("high", "high-flagship-soc"),
        "mid_nothing_phone_1": ("mid", "mid-upper-midrange-soc"),
        "gpu_galaxy_a54": ("mid", "mid-upper-midrange-soc"),
        "low_galaxy_a03": ("low", "low-entry-soc"),
    }
    profiles = sorted(VIRTUAL.glob("*.toml"))
    assert {profile.stem for profile in profiles} >= set(expected)
    for profile in profiles:
        got = rules.classify(virtual_device(profile))
        if profile.stem in expected:
            assert (got.tier, got.rule_id) == expected[profile.stem], profile.name
        assert got.tier in rules.tiers


def test_soc_model_is_authoritative_over_shared_board_names(rules) -> None:
    # SM7325 and SM8350 both report board 'lahaina': only ro.soc.model tells them apart.
    mid = DeviceInfo(serial="a", soc_model="SM7325", board_platform="lahaina", ram_bytes=8 * GIB, sdk=33)
    high = DeviceInfo(serial="b", soc_model="SM8350", board_platform="lahaina", ram_bytes=8 * GIB, sdk=33)
    unnamed = DeviceInfo(serial="c", board_platform="lahaina", hardware="qcom", ram_bytes=6 * GIB, sdk=30)
    assert rules.classify(mid).tier == "mid"
    assert rules.classify(high).tier == "high"
    assert rules.classify(unnamed).rule_id == "low-fallback"
    assert soc_identities(unnamed) == ("lahaina", "qcom")


def test_ram_and_sdk_conditions(rules) -> None:
    little_ram = DeviceInfo(serial="a", soc_model="SM8550", ram_bytes=4 * GIB, sdk=34)
    old_android = DeviceInfo(serial="b", soc_model="SM8550", ram_bytes=8 * GIB, sdk=29)
    unlisted_big = DeviceInfo(serial="c", soc_model="Kirin 9000", ram_bytes=8 * GIB, sdk=31)
    nothing_known = DeviceInfo(serial="d")
    assert rules.classify(little_ram).rule_id == "mid-flagship-soc-little-ram"
    assert rules.classify(old_android).rule_id == "mid-flagship-soc-little-ram"
    assert rules.classify(unlisted_big).rule_id == "mid-unlisted-soc-large-ram"
    assert rules.classify(nothing_known).rule_id == "low-fallback"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tiers.toml"
    path.write_text(text)
    return path


def test_tier_file_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="catch-all"):
        load_tiers(
            write(tmp_path, 'schema_version = 1\ntiers = ["a"]\n[[rules]]\nid = "x"\ntier = "a"\nmin_sdk = 30\n')
        )
    with pytest.raises(SchemaError, match="unknown SoC families"):
        load_tiers(
            write(tmp_path, 'schema_version = 1\ntiers = ["a"]\n[[rules]]\nid = "x"\ntier = "a"\nfamilies = ["nope"]\n')
        )
    with pytest.raises(SchemaError, match="bad pattern 'SM8\\[': the '\\[' at position 4 is never closed"):
        load_tiers(
            write(
                tmp_path,
                'schema_version = 1\ntiers = ["a"]\n[families]\nf = ["SM8["]\n[[rules]]\nid = "x"\ntier = "a"\n',
            )
        )
    with pytest.raises(SchemaError, match="tier` from"):
        load_tiers(write(tmp_path, 'schema_version = 1\ntiers = ["a"]\n[[rules]]\nid = "x"\ntier = "b"\n'))
    with pytest.raises(SchemaError, match="upgrade tflite-farm"):
        load_tiers(write(tmp_path, "schema_version = 2\n"))
    with pytest.raises(InputFileError, match="not valid TOML"):
        load_tiers(write(tmp_path, "schema_version = \n"))
    with pytest.raises(InputFileError, match="does not exist"):
        load_tiers(tmp_path / "missing.toml")


def test_shipped_farm_is_the_local_server_adb_would_use() -> None:
    assert load_farm(environ={}) == (AdbServer("127.0.0.1", 5037),)
    assert load_farm(environ={"ANDROID_ADB_SERVER_PORT": "5999", "ANDROID_ADB_SERVER_HOST": "10.1.2.3"}) == (
        AdbServer("10.1.2.3", 5999),
    )
    with pytest.raises(InputFileError, match="not a port number"):
        load_farm(environ={"ANDROID_ADB_SERVER_PORT": "adb"})


def test_farm_file_with_several_servers(tmp_path: Path) -> None:
    path = tmp_path / "farm.toml"
    path.write_text('schema_version = 1\n[[servers]]\nport = 5037\n[[servers]]\nhost = "10.0.0.2"\nport = 5038\n')
    assert load_farm(path, environ={"ANDROID_ADB_SERVER_PORT": "1"}) == (
        AdbServer("127.0.0.1", 5037),
        AdbServer("10.0.0.2", 5038),
    )
    path.write_text("schema_version = 1\n[[servers]]\nport = 70000\n")
    with pytest.raises(SchemaError, match="TCP port"):
        load_farm(path)


# --- the shipped rules on every widely sold SoC of the last eight years ---------------

SOC_TABLE = Path(__file__).resolve().parent / "data" / "soc_tiers.csv"


def _soc_rows() -> list[dict[str, str]]:
    import csv

    with SOC_TABLE.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _identities(row: dict[str, str]) -> list[tuple[str, DeviceInfo]]:
    """Each way a phone with this SoC can name it, alone: ro.soc.model (Android 12+), each board
    name (with Qualcomm's generic ro.hardware), each distinctive ro.hardware / ro.chipname."""
    ram, sdk = int(row["ram_bytes"]), int(row["sdk"])
    ways = []
    if row["soc_model"]:
        ways.append(
            (f"ro.soc.model={row['soc_model']}", DeviceInfo("x", soc_model=row["soc_model"], ram_bytes=ram, sdk=sdk))
        )
    for board in row["board_platforms"].split():
        ways.append(
            (
                f"ro.board.platform={board}",
                DeviceInfo("x", board_platform=board, hardware="qcom", ram_bytes=ram, sdk=sdk),
            )
        )
    for value in row["hardware"].split():
        ways.append((f"ro.hardware={value}", DeviceInfo("x", hardware=value, ram_bytes=ram, sdk=sdk)))
        ways.append((f"ro.chipname={value}", DeviceInfo("x", chipname=value, ram_bytes=ram, sdk=sdk)))
    return ways


def test_the_soc_table_covers_every_family_and_tier() -> None:
    rows = _soc_rows()
    assert len(rows) >= 100 and all(row["source"].strip() for row in rows)
    names = " ".join(row["name"] for row in rows)
    for family in (
        "Snapdragon 8",
        "Snapdragon 7",
        "Snapdragon 6",
        "Snapdragon 4",
        "Exynos",
        "Dimensity",
        "Helio",
        "Tensor",
        "Unisoc",
        "Kirin",
    ):
        assert family in names, family
    assert {row["expected_tier"] for row in rows} == set(load_tiers().tiers)


@pytest.mark.parametrize("row", _soc_rows(), ids=lambda row: row["name"])
def test_shipped_rules_give_each_soc_its_tier_however_the_phone_names_it(rules, row: dict[str, str]) -> None:
    ways = _identities(row)
    assert ways, f"{row['name']} has no identifier to test"
    for how, device in ways:
        assert rules.classify(device).tier == row["expected_tier"], f"{row['name']} by {how} ({row['source']})"


def test_the_reported_2018_and_2019_flagships_are_mid_not_low(rules) -> None:
    # Snapdragon 845 (4 GB) and 855 (6 GB) on Android 10 name only their boards; the T606 stays low.
    assert (
        rules.classify(
            DeviceInfo("a", board_platform="sdm845", hardware="qcom", ram_bytes=3_700_000_000, sdk=29)
        ).rule_id
        == "mid-former-flagship-soc"
    )
    assert (
        rules.classify(
            DeviceInfo("b", board_platform="msmnile", hardware="qcom", ram_bytes=5_600_000_000, sdk=29)
        ).rule_id
        == "mid-former-flagship-soc"
    )
    assert (
        rules.classify(
            DeviceInfo("c", soc_model="T606", board_platform="ums9230", ram_bytes=3_700_000_000, sdk=33)
        ).tier
        == "low"
    )


def test_no_shipped_glob_matches_a_board_name_shared_by_socs_of_different_tiers(rules) -> None:
    shared = ("lahaina", "taro", "pineapple", "cliffs", "parrot", "holi", "sm6150", "qcom", "exynos5")
    for board in shared:
        hits = [
            rule.id
            for rule in rules.rules
            if rule.soc_globs and rule.matches(DeviceInfo("x", board_platform=board, ram_bytes=16_000_000_000, sdk=36))
        ]
        assert hits == [], f"{board} is matched by {hits}"
