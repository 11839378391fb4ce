"""The policy file: schema, validation, resolution on real device dumps, diff, and their CLI."""

from __future__ import annotations

import copy
import hashlib
import json
import socket
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fixture_paths import DEVICE_DUMPS
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from harness.commands import main
from harness.deprecations import NNAPI_DEPRECATION
from harness.errors import DeviceError, InputFileError, SchemaError, UsageError
from harness.phone.device import PhoneFacts
from harness.phone.discovery import DeviceEntry
from harness.phone.facts import AdbState, DeviceInfo
from harness.phone.profiles import AdbServer, TierFacts, glob_problem, load_tiers
from harness.policy_diff import ChangeKind, diff, format_diff
from harness.policy_file import (
    POLICY_SCHEMA_VERSION,
    POLICY_UPGRADES,
    load_policy,
    policy_schema,
    read_policy,
    validate,
)
from harness.policy_resolve import device_for_serial, device_from_dumps, format_resolution, resolve, tier_entries

DUMPS = DEVICE_DUMPS
VERBATIM_MARKER = "# ---- verbatim text below this line ----"
PIXEL_8_PRO = DUMPS / "getprop_01_google_pixel8pro_husky_tensor_g3.txt"
GALAXY_S5_NEO = DUMPS / "getprop_03_samsung_galaxy_s5neo_sm-g903f_exynos7580.txt"
ASUS_TF201 = DUMPS / "getprop_06_asus_tf201_tegra3_android321_full.txt"
TF201_MEMINFO = DUMPS / "meminfo_01_asus_tf201_tegra3_1GB.txt"

RULES = load_tiers()
ENTRIES = tier_entries(RULES)
AT = {entry["rule"]: index for index, entry in enumerate(ENTRIES)}  # rule id -> its index in `tiers`
LOW = [index for index, entry in enumerate(ENTRIES) if entry["name"] == "low"]
MID = [index for index, entry in enumerate(ENTRIES) if entry["name"] == "mid"]
HIGH = AT["high-flagship-soc"]

VERSION = "2026.11.24+3fa9c2d1"
FLOAT_SIGNATURE = {
    "inputs": [{"name": "serving_default_x:0", "shape": [1, 8, 8, 1], "dtype": "float32", "quantization": None}],
    "outputs": [{"name": "StatefulPartitionedCall:0", "shape": [1, 10], "dtype": "float32", "quantization": None}],
}
INT8_SIGNATURE = {
    "inputs": [
        {
            "name": "serving_default_x:0",
            "shape": [1, 8, 8, 1],
            "dtype": "int8",
            "quantization": {"scale": 0.0627451, "zero_point": -128},
        }
    ],
    "outputs": [
        {
            "name": "StatefulPartitionedCall:0",
            "shape": [1, 10],
            "dtype": "int8",
            "quantization": {"scale": 0.00390625, "zero_point": -128},
        }
    ],
}
SIZES = {"fp32": 52288, "fp16": 28416, "int8": 16384}


def sha(variant: str) -> str:
    return hashlib.sha256(f"digits_cnn {variant} {VERSION}".encode()).hexdigest()


def entry(variant: str, delegate: str, threads: int) -> dict[str, Any]:
    return {
        "variant": variant,
        "delegate": delegate,
        "num_threads": threads,
        "model": {
            "file": f"digits_cnn_{variant}.tflite",
            "sha256": sha(variant),
            "size_bytes": SIZES[variant],
            "version": VERSION,
            "url": f"https://cdn.example.com/digits_cnn/{variant}.tflite",
            "io_signature": INT8_SIGNATURE if variant == "int8" else FLOAT_SIGNATURE,
        },
    }


CHAINS = {
    "high": (entry("fp16", "gpu", 1), [entry("fp16", "xnnpack", 2), entry("fp32", "cpu", 2)]),
    "mid": (entry("fp16", "xnnpack", 2), [entry("fp32", "cpu", 2)]),
    "low": (entry("fp32", "cpu", 1), []),
}


def make_policy() -> dict[str, Any]:
    tiers = [
        {
            **base,
            "choice": CHAINS[base["name"]][0],
            "fallbacks": CHAINS[base["name"]][1],
            "evidence": {"devices": 1, "runs": 1, "inference_p50_us": 4210.0, "failures": 0},
        }
        for base in ENTRIES
    ]
    document = {
        "schema_version": POLICY_SCHEMA_VERSION,
        "generated_at": "2026-11-24T18:00:00+00:00",
        "generated_by": "harness 0.1.0",
        "model": {"name": "digits_cnn", "version": VERSION, "io_signature": FLOAT_SIGNATURE},
        "objective": {
            "metric": "inference_p50_us",
            "aggregate": "median over the tier's devices",
            "constraints": {"max_accuracy_drop": 0.01, "max_latency_us": 30000},
            "tie_test": {"test": "Welch's t-test", "alpha": 0.05, "min_effect": 0.05},
        },
        "source": {"results": "results", "runs": ["20261124-180000-ab12"], "manifest": None},
        "tiers": tiers,
        "default": entry("fp32", "cpu", 1),
    }
    # Through JSON: shared sub-objects become independent, as in a file read back.
    return json.loads(json.dumps(document))


VALID = make_policy()


@pytest.fixture
def policy() -> dict[str, Any]:
    return copy.deepcopy(VALID)


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def set_chain(document: dict, name: str, choice: dict, fallbacks: list[dict]) -> None:
    """Give every entry of tier `name` this chain, as derive would."""
    for tier in document["tiers"]:
        if tier["name"] == name:
            tier["choice"], tier["fallbacks"] = copy.deepcopy(choice), copy.deepcopy(fallbacks)


def verbatim(path: Path) -> str:
    """The dump as captured: everything after the fixture's header lines."""
    return path.read_text(encoding="utf-8").split(VERBATIM_MARKER + "\n", 1)[1]


def run(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["policy", *map(str, args)], env=env)


# --- schema and tier entries -----------------------------------------------------------


def test_schema_ships_as_package_data_and_is_a_valid_draft_2020_12_schema() -> None:
    shipped = resources.files("harness").joinpath(f"policy_schema_v{POLICY_SCHEMA_VERSION}.json")
    assert json.loads(shipped.read_text(encoding="utf-8")) == policy_schema()
    Draft202012Validator.check_schema(policy_schema())
    assert policy_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_tier_entries_are_the_rules_of_tiers_toml_in_order() -> None:
    assert [(entry["name"], entry["rule"]) for entry in ENTRIES] == [(rule.tier, rule.id) for rule in RULES.rules]
    high = ENTRIES[HIGH]["match"]
    assert "Tensor*" in high["soc_any"] and high["min_ram_bytes"] == 5_000_000_000 and high["min_sdk"] == 30
    assert ENTRIES[-1] == {"name": "low", "rule": "low-fallback", "match": {}}
    # A rule without a condition has no key for it.
    assert set(ENTRIES[AT["low-entry-soc"]]["match"]) == {"soc_any"}


# --- validate -------------------------------------------------------------------------------


def test_the_fixture_policy_is_valid(policy: dict) -> None:
    assert validate(policy) == ()


def test_cli_validate_accepts_a_valid_policy(tmp_path: Path, policy: dict) -> None:
    path = write(tmp_path / "policy.json", policy)
    result = run("validate", path)
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.strip() == f"{path}: valid policy v{POLICY_SCHEMA_VERSION} ({len(ENTRIES)} tier entries, 3 tiers)"
    )

    result = run("validate", path, "--json")
    assert result.exit_code == 0
    # This hand-written policy does not say what measured it: valid, with a warning saying so.
    assert json.loads(result.stdout) == {
        "valid": True,
        "schema_version": POLICY_SCHEMA_VERSION,
        "problems": [],
        "warnings": [
            "the policy does not say which kind of device measured it (an older harness derived it): "
            "derive it again to know"
        ],
    }


def _add_catch_all_early(document: dict) -> None:
    early = copy.deepcopy(document["tiers"][-1])
    early["rule"] = "low-early-catch-all"
    document["tiers"].insert(1, early)


BROKEN: list[tuple[str, Callable[[dict], None], list[str], list[str]]] = [
    # (id, break the document, every place reported in order, words the first message has)
    (
        "bad-sha256",
        lambda d: d["tiers"][HIGH]["fallbacks"][0]["model"].update(sha256=sha("fp16").upper()),
        [f"tiers[{HIGH}].fallbacks[0].model.sha256"],
        ["64 lowercase hex", "sha256sum"],
    ),
    (
        "chain-ends-on-gpu",
        lambda d: set_chain(d, "low", entry("fp32", "gpu", 1), []),
        [f"tiers[{index}].choice.delegate" for index in LOW],
        ["ends on 'gpu'", "delegate 'cpu'"],
    ),
    (
        "default-on-xnnpack",
        lambda d: d["default"].update(delegate="xnnpack"),
        ["default.delegate"],
        ["is 'xnnpack'", "use delegate 'cpu'"],
    ),
    (
        "duplicate-delegate-in-chain",
        lambda d: set_chain(
            d, "mid", entry("fp16", "xnnpack", 2), [entry("fp32", "xnnpack", 1), entry("fp32", "cpu", 1)]
        ),
        [f"tiers[{index}].fallbacks[0].delegate" for index in MID],
        ["already tried", "different one"],
    ),
    (
        "unknown-key",
        lambda d: d["tiers"][HIGH]["choice"].update(delegates="gpu"),
        [f"tiers[{HIGH}].choice.delegates"],
        ["remove it or fix its spelling", "delegate"],
    ),
    (
        "wrong-type",
        lambda d: d["tiers"][HIGH]["choice"].update(num_threads="2"),
        [f"tiers[{HIGH}].choice.num_threads"],
        ["'2' is a string", "write an integer"],
    ),
    (
        "negative-min-sdk",
        lambda d: d["tiers"][HIGH]["match"].update(min_sdk=-1),
        [f"tiers[{HIGH}].match.min_sdk"],
        ["below the minimum 1", "positive integer"],
    ),
    (
        "malformed-glob",
        lambda d: d["tiers"][HIGH]["match"]["soc_any"].__setitem__(0, "SM8["),
        [f"tiers[{HIGH}].match.soc_any[0]"],
        ["'SM8['", "never closed", "close the [...] class"],
    ),
    (
        "empty-soc-any",
        lambda d: d["tiers"][HIGH]["match"].update(soc_any=[]),
        [f"tiers[{HIGH}].match.soc_any"],
        ["is empty", "leave the key out to match any soc"],
    ),
    (
        "catch-all-not-last",
        _add_catch_all_early,
        ["tiers[1].match"],
        ["matches every phone", "never reached", "move this catch-all entry to the end"],
    ),
    (
        "same-tier-different-choice",
        lambda d: d["tiers"][MID[1]]["choice"].update(num_threads=4),
        [f"tiers[{MID[1]}].choice"],
        [f"tiers[{MID[0]}].choice", "same tier 'mid'"],
    ),
    (
        "version-mismatch",
        lambda d: d["default"]["model"].update(version="2026.11.23+00aa11bb"),
        ["default.model.version"],
        ["model.version is '2026.11.24+3fa9c2d1'", "set '2026.11.24+3fa9c2d1'"],
    ),
    (
        "same-sha256-other-size",
        lambda d: d["default"]["model"].update(size_bytes=SIZES["fp32"] + 1),
        ["default.model.size_bytes"],
        ["same sha256", "correct the wrong one"],
    ),
    (
        "same-file-other-sha256",
        lambda d: d["default"]["model"].update(sha256=sha("other")),
        ["default.model.sha256"],
        ["'digits_cnn_fp32.tflite' has sha256", "different file names"],
    ),
    (
        "missing-key",
        lambda d: d["default"]["model"].pop("sha256"),
        ["default.model.sha256"],
        ["is missing: add it", "64 lowercase hex"],
    ),
    (
        "unknown-delegate",
        lambda d: d["tiers"][HIGH]["choice"].update(delegate="vulkan"),
        [f"tiers[{HIGH}].choice.delegate"],
        ["'vulkan'", "cpu, xnnpack, gpu, nnapi"],
    ),
    (
        "duplicate-rule-id",
        lambda d: d["tiers"][LOW[1]].update(rule=d["tiers"][LOW[0]]["rule"]),
        [f"tiers[{LOW[1]}].rule"],
        [f"tiers[{LOW[0]}]", "its own rule id"],
    ),
]


@pytest.mark.parametrize(("breaks", "places", "words"), [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_a_broken_policy_is_rejected_at_the_place_with_the_fix(
    policy: dict, breaks: Callable[[dict], None], places: list[str], words: list[str]
) -> None:
    breaks(policy)
    problems = validate(policy)
    assert [problem.where for problem in problems] == places, problems
    for word in words:
        assert word.lower() in problems[0].message.lower(), problems[0].message


def test_validate_lists_every_problem_and_never_raises_on_junk(policy: dict) -> None:
    policy["tiers"][HIGH]["choice"]["num_threads"] = 0
    policy["tiers"][HIGH]["fallbacks"] = "none"
    policy["default"] = None
    policy["extra"] = True
    wheres = [problem.where for problem in validate(policy)]
    assert wheres == ["default", "extra", f"tiers[{HIGH}].choice.num_threads", f"tiers[{HIGH}].fallbacks"]
    assert [problem.where for problem in validate([])] == ["(top level)"]
    assert validate({"tiers": [None, {"choice": 3, "fallbacks": [1]}], "model": []})  # problems, no exception


@pytest.mark.parametrize("pattern", ["SM8250*", "T6??", "Tensor*", "MT68[0-9]*", "[!a]x", "[]]", "a[]b]"])
def test_well_formed_globs(pattern: str) -> None:
    assert glob_problem(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "why"), [("SM8[", "'[' at position 4"), ("a]b", "']' at position 2"), ("[!", "'['")]
)
def test_malformed_globs(pattern: str, why: str) -> None:
    problem = glob_problem(pattern)
    assert problem is not None and why in problem


def test_cli_validate_reports_problems_on_stderr_and_exits_2(tmp_path: Path, policy: dict) -> None:
    policy["default"]["delegate"] = "gpu"
    path = write(tmp_path / "policy.json", policy)
    result = run("validate", path)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[0].startswith("default.delegate: is 'gpu'")
    assert result.stderr.splitlines()[-1] == f"{path}: invalid (1 problem)"

    result = run("validate", path, "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False and [problem["where"] for problem in report["problems"]] == ["default.delegate"]


# --- load_policy ----------------------------------------------------------------------------


def test_load_policy_reads_a_policy_back(tmp_path: Path, policy: dict) -> None:
    assert load_policy(write(tmp_path / "policy.json", policy)) == policy


def test_a_newer_schema_version_says_to_upgrade(tmp_path: Path, policy: dict) -> None:
    policy["schema_version"] = POLICY_SCHEMA_VERSION + 1
    path = write(tmp_path / "policy.json", policy)
    with pytest.raises(
        SchemaError,
        match=r"is policy v3, but this tflite-farm reads up to v2: upgrade tflite-farm: "
        r"pip install -U tflite-farm",
    ):
        load_policy(path)
    result = run("validate", path)
    assert result.exit_code == 2 and "reads up to v2" in result.stderr and result.stderr.startswith("error: ")


@pytest.mark.parametrize("version", [None, "1", 1.0, True, 0])
def test_a_missing_or_odd_schema_version_is_a_schema_error(tmp_path: Path, policy: dict, version: Any) -> None:
    if version is None:
        del policy["schema_version"]
    else:
        policy["schema_version"] = version
    with pytest.raises(SchemaError, match='"schema_version": 2'):
        load_policy(write(tmp_path / "policy.json", policy))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"schema_version": 1,', "is not JSON (Expecting"),
        ("[1, 2]", "holds an array, not a policy object"),
        ('{"schema_version": 1, "x": NaN}', "NaN is not a JSON number"),
        (b"\x89PNG\r\n\x1a\n\xff", "is not UTF-8 text"),
    ],
)
def test_what_is_not_a_policy_file_is_an_input_file_error(tmp_path: Path, content: str | bytes, words: str) -> None:
    path = tmp_path / "policy.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputFileError) as raised:
        load_policy(path)
    assert words in str(raised.value)


def test_a_missing_policy_file_is_an_input_file_error(tmp_path: Path) -> None:
    with pytest.raises(
        InputFileError, match="missing.json does not exist: pass the JSON file 'harness policy derive' wrote"
    ):
        load_policy(tmp_path / "missing.json")
    result = run("validate", tmp_path / "missing.json")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "does not exist" in result.stderr


# --- resolve on real device dumps ---------------------------------------------------------


@pytest.mark.parametrize(
    ("getprop", "meminfo", "tier", "rule"),
    [
        (PIXEL_8_PRO, None, "high", "high-flagship-soc"),
        (GALAXY_S5_NEO, None, "low", "low-entry-soc"),
        (ASUS_TF201, None, "low", "low-entry-soc"),
        (ASUS_TF201, TF201_MEMINFO, "low", "low-entry-soc"),
        # A flagship SoC with 1 GB of RAM: RAM decides, and both sides agree on it.
        (PIXEL_8_PRO, TF201_MEMINFO, "mid", "mid-flagship-soc-little-ram"),
    ],
    ids=["pixel8pro", "galaxy-s5-neo", "tf201", "tf201+meminfo", "pixel8pro+1GB"],
)
def test_resolve_on_real_dumps_agrees_with_the_harness_classifier(
    getprop: Path, meminfo: Path | None, tier: str, rule: str
) -> None:
    device = device_from_dumps(verbatim(getprop), None if meminfo is None else verbatim(meminfo))
    facts = json.loads(getprop.with_suffix(".expected.json").read_text(encoding="utf-8"))
    assert device.sdk == facts["sdk"]
    resolution = resolve(VALID, device)
    classification = RULES.classify(device)
    assert (resolution.tier, resolution.rule) == (tier, rule) == (classification.tier, classification.rule_id)
    matched = VALID["tiers"][AT[rule]]
    assert resolution.chain == (matched["choice"], *matched["fallbacks"], VALID["default"])
    assert len(resolution.reasons) == AT[rule] + 1
    assert resolution.reasons[-1].startswith(f"{tier} ({rule}): yes: ")
    assert all(": no: " in reason for reason in resolution.reasons[:-1])


def test_resolution_explains_identity_ram_and_sdk() -> None:
    pixel = resolve(VALID, device_from_dumps(verbatim(PIXEL_8_PRO)))
    assert pixel.identity == ("Tensor G3",)
    assert pixel.ram_bytes == 12 * 2**30  # ro.boot.ddr_size: 12GiB, there is no meminfo
    assert pixel.sdk == 36
    assert pixel.reasons == (
        "high (high-flagship-soc): yes: SoC 'Tensor G3' matches 'Tensor*'; RAM 12.88 GB >= 5.00 GB; SDK 36 >= 30",
    )

    neo = resolve(VALID, device_from_dumps(verbatim(GALAXY_S5_NEO)))
    assert neo.identity == ("exynos7580", "exynos5", "samsungexynos7580")  # ro.chipname first
    flagship_patterns = len(RULES.rules[HIGH].soc_globs)
    assert neo.reasons[0] == (
        "high (high-flagship-soc): no: SoC 'exynos7580' or 'exynos5' or 'samsungexynos7580' "
        f"matches none of {flagship_patterns} patterns; RAM unknown, needs >= 5.00 GB; SDK 23 < 30"
    )
    assert neo.reasons[-1] == "low (low-entry-soc): yes: SoC 'exynos7580' matches 'exynos7*'"

    tf201 = resolve(VALID, device_from_dumps(verbatim(ASUS_TF201), verbatim(TF201_MEMINFO)))
    assert tf201.ram_bytes == 1008528 * 1024  # MemTotal
    assert "RAM 1.03 GB < 3.50 GB" in tf201.reasons[AT["mid-upper-midrange-soc"]]


def test_a_phone_no_entry_matches_gets_the_default_alone(policy: dict) -> None:
    del policy["tiers"][-1]  # no catch-all
    resolution = resolve(policy, DeviceInfo(serial="bare"))
    assert (resolution.tier, resolution.rule, resolution.chain) == (None, None, (policy["default"],))
    assert len(resolution.reasons) == len(policy["tiers"])
    assert "SoC unknown (the phone sets none of ro.soc.model" in resolution.reasons[0]
    text = format_resolution(resolution)
    assert text.splitlines()[0] == "tier: none (no entry matches: the phone gets the default)"
    assert text.splitlines()[-1] == f"  1. fp32/cpu/x1  digits_cnn_fp32.tflite sha256 {sha('fp32')[:12]}..  (default)"


_GLOBS = sorted({glob for rule in RULES.rules for glob in rule.soc_globs})
_SOC_NAMES = st.one_of(
    st.none(),
    st.sampled_from(_GLOBS).map(lambda glob: glob.replace("*", "x1").replace("?", "7")),
    st.sampled_from(["Tensor G3", "sm8650", "MT6789V/CD", "lahaina", "Kirin990", "generic", ""]),
)


@settings(max_examples=300, deadline=None)
@given(
    soc_model=_SOC_NAMES,
    chipname=_SOC_NAMES,
    board_platform=_SOC_NAMES,
    hardware=_SOC_NAMES,
    ram_bytes=st.one_of(st.none(), st.integers(0, 20 * 10**9)),
    sdk=st.one_of(st.none(), st.integers(1, 40)),
)
def test_resolve_and_the_harness_classifier_agree_on_any_phone(
    soc_model, chipname, board_platform, hardware, ram_bytes, sdk
) -> None:
    device = DeviceInfo(
        serial="any",
        soc_model=soc_model,
        chipname=chipname,
        board_platform=board_platform,
        hardware=hardware,
        ram_bytes=ram_bytes,
        sdk=sdk,
    )
    resolution = resolve(VALID, device)
    classification = RULES.classify(device)
    assert (resolution.tier, resolution.rule) == (classification.tier, classification.rule_id)
    # The explanation agrees with the verdict: conditions held on the matching line, some failed on the others.
    assert resolution.reasons[-1].startswith(f"{resolution.tier} ({resolution.rule}): yes: ")
    assert not any(word in resolution.reasons[-1] for word in ("none of", " < ", "unknown, needs"))
    assert all(": no: " in reason for reason in resolution.reasons[:-1])


def test_device_from_dumps_refuses_what_is_not_a_dump() -> None:
    with pytest.raises(InputFileError, match=r"no '\[key\]: \[value\]' lines.*adb shell getprop"):
        device_from_dumps(verbatim(TF201_MEMINFO))
    with pytest.raises(InputFileError, match="no 'MemTotal: N kB' line"):
        device_from_dumps(verbatim(ASUS_TF201), verbatim(ASUS_TF201))


def test_cli_resolve_prints_tier_reasons_and_numbered_chain(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.json", VALID)
    result = run("resolve", path, "--getprop", PIXEL_8_PRO)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "tier: high (rule high-flagship-soc)"
    assert lines[1] == "phone: SoC 'Tensor G3', RAM 12.88 GB, SDK 36"
    fp16, fp32 = sha("fp16")[:12], sha("fp32")[:12]
    assert lines[-4:] == [
        f"  1. fp16/gpu/x1  digits_cnn_fp16.tflite sha256 {fp16}..",
        f"  2. fp16/xnnpack/x2  digits_cnn_fp16.tflite sha256 {fp16}..",
        f"  3. fp32/cpu/x2  digits_cnn_fp32.tflite sha256 {fp32}..",
        f"  4. fp32/cpu/x1  digits_cnn_fp32.tflite sha256 {fp32}..  (default)",
    ]

    result = run("resolve", path, "--getprop", ASUS_TF201, "--meminfo", TF201_MEMINFO, "--json")
    assert result.exit_code == 0, result.output
    resolution = json.loads(result.stdout)
    assert (resolution["tier"], resolution["rule"]) == ("low", "low-entry-soc")
    assert resolution["ram_bytes"] == 1008528 * 1024 and resolution["sdk"] == 13
    assert resolution["identity"] == ["tegra", "cardhu"]
    assert [item["variant"] for item in resolution["chain"]] == ["fp32", "fp32"]


def test_cli_resolve_reads_a_utf16_dump_as_windows_powershell_saves_it(tmp_path: Path) -> None:
    dump = tmp_path / "getprop.txt"
    dump.write_bytes(PIXEL_8_PRO.read_text(encoding="utf-8").replace("\n", "\r\n").encode("utf-16"))
    result = run("resolve", write(tmp_path / "policy.json", VALID), "--getprop", dump)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("tier: high (rule high-flagship-soc)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (
            ["--getprop", str(PIXEL_8_PRO), "--serial", "emulator-5554"],
            "exactly one of --getprop DUMP or --serial SERIAL",
        ),
        ([], "exactly one of --getprop DUMP or --serial SERIAL"),
        (["--serial", "emulator-5554", "--meminfo", str(TF201_MEMINFO)], "--meminfo goes with --getprop"),
        (["--getprop", "/nonexistent/getprop.txt"], "does not exist: save the output of 'adb shell getprop'"),
    ],
)
def test_cli_resolve_refuses_bad_flags(tmp_path: Path, flags: list[str], words: str) -> None:
    result = run("resolve", write(tmp_path / "policy.json", VALID), *flags)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and words in result.stderr


def test_cli_resolve_serial_without_an_adb_server_names_the_fix(tmp_path: Path) -> None:
    result = run(
        "resolve",
        write(tmp_path / "policy.json", VALID),
        "--serial",
        "emulator-5554",
        env={"ANDROID_ADB_SERVER_PORT": str(_free_port())},
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: adb server 127.0.0.1:") and "start-server" in result.stderr


def test_cli_resolve_validates_the_policy_first(tmp_path: Path, policy: dict) -> None:
    policy["tiers"][HIGH]["match"]["soc_any"].append("SM8[")
    result = run("resolve", write(tmp_path / "policy.json", policy), "--getprop", PIXEL_8_PRO)
    assert result.exit_code == 2 and result.stdout == ""
    assert f"tiers[{HIGH}].match.soc_any[" in result.stderr and "never closed" in result.stderr


def _farm_entry(serial: str, port: int = 5037, problem: str | None = None) -> DeviceEntry:
    info = device_from_dumps(verbatim(PIXEL_8_PRO), serial=serial)
    facts = None if problem else PhoneFacts(info=info, props={})
    return DeviceEntry(AdbServer("127.0.0.1", port), serial, AdbState.DEVICE, facts=facts, problem=problem)


def test_device_for_serial_finds_one_phone_or_says_what_to_pass() -> None:
    entries = [
        _farm_entry("husky01"),
        _farm_entry("twin", 5037),
        _farm_entry("twin", 5038),
        _farm_entry("locked", problem="locked is 'unauthorized': accept the USB debugging prompt"),
    ]
    assert device_for_serial(entries, "husky01").soc_model == "Tensor G3"
    assert device_for_serial(entries, "127.0.0.1:5038/twin").serial == "twin"
    with pytest.raises(DeviceError, match="no device 'nope' on the farm's adb servers .*'harness devices'"):
        device_for_serial(entries, "nope")
    with pytest.raises(DeviceError, match="devices there: none"):
        device_for_serial([], "nope")
    with pytest.raises(UsageError, match="several adb servers .*HOST:PORT/SERIAL"):
        device_for_serial(entries, "twin")
    with pytest.raises(DeviceError, match="cannot use locked: .*accept the USB debugging prompt"):
        device_for_serial(entries, "locked")


# --- diff ------------------------------------------------------------------------------------


def test_diff_of_the_same_policy_is_empty(tmp_path: Path) -> None:
    changes = diff(VALID, copy.deepcopy(VALID))
    assert changes.changes == () and not changes.incompatible
    assert format_diff(changes) == "no changes"
    result = run("diff", write(tmp_path / "a.json", VALID), write(tmp_path / "b.json", VALID))
    assert result.exit_code == 0 and result.stdout.strip() == "no changes"


def test_a_new_float_variant_with_the_same_signature_is_compatible(tmp_path: Path, policy: dict) -> None:
    set_chain(policy, "low", entry("fp16", "cpu", 1), [])
    changes = diff(VALID, policy)
    assert [(change.kind, change.subject, change.incompatible) for change in changes.changes] == [
        (ChangeKind.CHAIN, "tier 'low' choice", False)
    ]
    assert changes.changes[0].detail == (
        f"fp32/cpu/x1 sha256 {sha('fp32')[:12]} -> fp16/cpu/x1 sha256 {sha('fp16')[:12]}"
    )
    result = run("diff", write(tmp_path / "old.json", VALID), write(tmp_path / "new.json", policy))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"tier 'low' choice: {changes.changes[0].detail}"


def test_an_int8_model_with_quantized_io_is_incompatible(tmp_path: Path, policy: dict) -> None:
    set_chain(policy, "low", entry("int8", "cpu", 1), [])
    changes = diff(VALID, policy)
    assert changes.incompatible
    signature = [change for change in changes.changes if change.kind is ChangeKind.SIGNATURE]
    assert [(change.subject, change.incompatible) for change in signature] == [("tier 'low' choice", True)]
    assert "input 0 dtype float32 -> int8" in signature[0].detail
    assert "input 0 quantization none -> scale 0.0627451 zero_point -128" in signature[0].detail
    assert "never hot-swap" in signature[0].detail

    result = run("diff", write(tmp_path / "old.json", VALID), write(tmp_path / "new.json", policy))
    assert result.exit_code == 1, result.output
    assert any(line.startswith("INCOMPATIBLE: tier 'low' choice: ") for line in result.stdout.splitlines())
    result = run("diff", tmp_path / "old.json", tmp_path / "new.json", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["incompatible"] is True


def test_shape_count_and_renamed_tensors(policy: dict) -> None:
    policy["model"]["io_signature"]["inputs"][0]["name"] = "input_1"
    changes = diff(VALID, policy)
    assert [(change.subject, change.incompatible) for change in changes.changes] == [("model", False)]
    assert "input 0 name 'serving_default_x:0' -> 'input_1' (compatible" in changes.changes[0].detail

    policy["model"]["io_signature"]["inputs"][0]["shape"] = [1, 28, 28, 1]
    policy["model"]["io_signature"]["outputs"].append(policy["model"]["io_signature"]["outputs"][0])
    detail = diff(VALID, policy).changes[0].detail
    assert "input 0 shape [1, 8, 8, 1] -> [1, 28, 28, 1]" in detail and "1 outputs -> 2" in detail

    policy["model"]["io_signature"] = None
    assert diff(VALID, policy).incompatible  # an unknown signature cannot be proven compatible


def test_tiers_added_removed_and_match_changes_are_reported(tmp_path: Path, policy: dict) -> None:
    for tier in policy["tiers"]:
        if tier["name"] == "low":
            tier["name"] = "entry"
    policy["tiers"][HIGH]["match"]["min_ram_bytes"] = 6_000_000_000
    policy["tiers"][HIGH]["match"]["soc_any"].append("SM8850*")
    lines = format_diff(diff(VALID, policy)).splitlines()
    assert (
        "tier 'low': removed (rules low-entry-soc, low-fallback): its phones now match a later entry or get the default"
        in lines
    )
    assert any(
        line.startswith("tier 'entry': added (rules low-entry-soc, low-fallback): fp32/cpu/x1") for line in lines
    )
    assert "tier 'high' rule 'high-flagship-soc': soc_any +['SM8850*']; min_ram_bytes 5000000000 -> 6000000000" in lines
    result = run("diff", write(tmp_path / "old.json", VALID), write(tmp_path / "new.json", policy))
    assert result.exit_code == 0 and result.stdout.splitlines() == lines

    policy = copy.deepcopy(VALID)
    del policy["tiers"][AT["mid-upper-midrange-soc"]]["match"]["soc_any"]
    del policy["tiers"][AT["mid-unlisted-soc-large-ram"]]
    assert validate(policy) == ()
    patterns = len(VALID["tiers"][AT["mid-upper-midrange-soc"]]["match"]["soc_any"])
    assert format_diff(diff(VALID, policy)).splitlines() == [
        f"tier 'mid' rule 'mid-upper-midrange-soc': soc_any {patterns} patterns -> absent (any SoC)",
        "tier 'mid' rule 'mid-unlisted-soc-large-ram': removed (matched RAM >= 7.00 GB, SDK >= 30)",
    ]


def test_version_default_and_rule_order_changes(policy: dict) -> None:
    version = "2026.12.01+aa00bb11"
    policy["model"]["version"] = version
    for tier in policy["tiers"]:
        for configuration in [tier["choice"], *tier["fallbacks"]]:
            configuration["model"]["version"] = version
    policy["default"]["model"]["version"] = version
    assert validate(policy) == ()
    # The version is reported once, not once per file.
    assert format_diff(diff(VALID, policy)) == f"model: version '{VERSION}' -> '{version}'"

    policy = copy.deepcopy(VALID)
    policy["default"]["num_threads"] = 2
    policy["tiers"][1], policy["tiers"][2] = policy["tiers"][2], policy["tiers"][1]
    subjects = [change.subject for change in diff(VALID, policy).changes]
    assert subjects == ["tiers", "default"]


def test_cli_diff_of_an_invalid_policy_exits_2(tmp_path: Path, policy: dict) -> None:
    policy["default"]["delegate"] = "nnapi"
    result = run("diff", write(tmp_path / "old.json", VALID), write(tmp_path / "new.json", policy))
    assert result.exit_code == 2 and "default.delegate: is 'nnapi'" in result.stderr


# --- versions: v2 adds delegate npu; v1 files keep reading ------------------------------

POLICY_V1 = Path(__file__).parent / "data" / "policy_v1.json"  # written by the v1 harness (tests/policy_data.py)


def test_every_schema_version_ships_and_only_v2_has_npu() -> None:
    assert POLICY_SCHEMA_VERSION == 2 and sorted(POLICY_UPGRADES) == [1]
    for version in (1, 2):
        Draft202012Validator.check_schema(policy_schema(version))
        assert policy_schema(version)["properties"]["schema_version"]["const"] == version
    delegates = {
        version: policy_schema(version)["$defs"]["entry"]["properties"]["delegate"]["enum"] for version in (1, 2)
    }
    assert delegates[2] == [*delegates[1], "npu"]

    # Nothing else differs but descriptions, the id, the title and the optional fields of a sustained policy
    # (objective load and fps, constraint frame_deadline_us): keep v2 minimal.
    def shape(schema: Any) -> Any:
        if isinstance(schema, dict):
            return {k: shape(v) for k, v in schema.items() if k not in ("description", "$id", "title", "const", "enum")}
        return [shape(v) for v in schema] if isinstance(schema, list) else schema

    v2 = shape(policy_schema(2))
    objective = v2["properties"]["objective"]["properties"]
    assert {"load", "fps"} <= set(objective) and "frame_deadline_us" in objective["constraints"]["properties"]
    for name in ("load", "fps"):
        del objective[name]
    del objective["constraints"]["properties"]["frame_deadline_us"]
    assert shape(policy_schema(1)) == v2


def test_v2_accepts_an_npu_chain_down_to_cpu(policy: dict) -> None:
    set_chain(
        policy,
        "high",
        entry("int8", "npu", 1),
        [entry("fp16", "gpu", 1), entry("fp16", "xnnpack", 2), entry("fp32", "cpu", 2)],
    )
    assert validate(policy) == ()


def test_v1_input_with_npu_is_rejected_and_says_v2_has_it(policy: dict) -> None:
    policy["schema_version"] = 1
    assert validate(policy) == ()  # the same document without npu is a valid v1 policy
    set_chain(policy, "high", entry("int8", "npu", 1), [entry("fp32", "cpu", 2)])
    problems = validate(policy)
    high = [f"tiers[{index}].choice.delegate" for index, tier in enumerate(policy["tiers"]) if tier["name"] == "high"]
    assert [p.where for p in problems] == high
    assert "'npu' is not one of cpu, xnnpack, gpu, nnapi" in problems[0].message
    assert "policy v1 has no delegate 'npu'; policy v2 has it" in problems[0].message


def test_a_v1_file_is_read_as_v2_with_nothing_changed_but_the_version() -> None:
    as_written = read_policy(POLICY_V1)
    assert as_written["schema_version"] == 1 and validate(as_written) == ()
    loaded = load_policy(POLICY_V1)
    assert loaded == {**as_written, "schema_version": 2}
    assert validate(loaded) == ()
    assert diff(as_written, loaded).changes == ()
    pixel = resolve(loaded, device_from_dumps(verbatim(PIXEL_8_PRO)))
    assert (pixel.tier, pixel.rule) == (RULES.classify(device_from_dumps(verbatim(PIXEL_8_PRO))).tier, pixel.rule)
    assert (
        resolve(as_written, TierFacts(("Tensor G3",), 12_000_000_000, 34)).chain
        == resolve(loaded, TierFacts(("Tensor G3",), 12_000_000_000, 34)).chain
    )


def test_cli_on_a_v1_file_says_v1_and_valid_and_resolves_and_diffs(tmp_path: Path) -> None:
    result = run("validate", POLICY_V1)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{POLICY_V1}: valid policy v1 (7 tier entries, 3 tiers; an older version")
    result = run("validate", POLICY_V1, "--json")
    assert json.loads(result.stdout)["schema_version"] == 1 and json.loads(result.stdout)["valid"] is True
    assert run("resolve", POLICY_V1, "--getprop", PIXEL_8_PRO).exit_code == 0
    newer = write(tmp_path / "v2.json", load_policy(POLICY_V1))
    result = run("diff", POLICY_V1, newer)
    assert (result.exit_code, result.stdout.strip()) == (0, "no changes")


def test_cli_refuses_a_v1_file_holding_npu(tmp_path: Path) -> None:
    document = read_policy(POLICY_V1)
    document["tiers"][0]["choice"]["delegate"] = "npu"
    path = write(tmp_path / "v1_npu.json", document)
    for command in (["validate", path], ["resolve", path, "--getprop", PIXEL_8_PRO]):
        result = run(*command)
        assert result.exit_code == 2 and "policy v1 has no delegate 'npu'" in result.stderr


def test_resolve_notes_nnapi_on_android_15_and_not_on_14(tmp_path: Path, policy: dict) -> None:
    set_chain(policy, "high", entry("fp16", "nnapi", 1), [entry("fp16", "gpu", 1), entry("fp32", "cpu", 2)])
    on_15 = resolve(policy, TierFacts(("Tensor G4",), 12_000_000_000, 35))
    on_14 = resolve(policy, TierFacts(("Tensor G4",), 12_000_000_000, 34))
    assert on_15.tier == on_14.tier == "high"
    assert on_15.notes == (f"{NNAPI_DEPRECATION} (this phone is on SDK 35; its chain tries fp16/nnapi/x1)",)
    assert on_14.notes == ()
    assert f"note: {NNAPI_DEPRECATION}" in format_resolution(on_15)
    assert "note:" not in format_resolution(on_14)
    assert on_15.to_json()["notes"] == list(on_15.notes)
    path = write(tmp_path / "policy.json", policy)
    result = run("resolve", path, "--getprop", PIXEL_8_PRO)  # a real Android 16 dump (SDK 36)
    assert result.exit_code == 0 and f"note: {NNAPI_DEPRECATION} (this phone is on SDK 36" in result.stdout
    result = run("resolve", path, "--getprop", PIXEL_8_PRO, "--json")
    assert json.loads(result.stdout)["notes"] == [
        f"{NNAPI_DEPRECATION} (this phone is on SDK 36; its chain tries fp16/nnapi/x1)"
    ]
