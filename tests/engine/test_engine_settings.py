"""Engine settings: the pinned environment names, .env files, defaults and error messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.engine_settings import (
    AccelerationSettings,
    EngineSettings,
    RemoteSettings,
    SettingsError,
    load_engine_settings,
)
from engine.requests.sizes import Size
from engine.service import Engine

REPO = Path(__file__).resolve().parents[2]
SDXL_NINE = ["1024x1024", "1152x896", "896x1152", "1216x832", "832x1216", "1344x768", "768x1344", "1536x640",
             "640x1536"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the developer's environment or a .env in the working directory."""
    for name, field in EngineSettings.model_fields.items():
        monkeypatch.delenv(field.alias or name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(("env", "value", "field", "expected"), [
    ("MODEL_ID", "someone/some-model", "model_id", "someone/some-model"),
    ("DEVICE", "cuda:1", "device", "cuda:1"),
    ("DEVICE", "CPU", "device", "cpu"),
    ("DATA_DIR", "/srv/imagine", "data_dir", Path("/srv/imagine")),
    ("SIZES", "512x512, 768x512", "sizes", (Size(512, 512), Size(768, 512))),
    ("DEFAULT_SIZE", "1344x768", "default_size", Size(1344, 768)),
    ("DEFAULT_STEPS", "30", "default_steps", 30),
    ("DEFAULT_GUIDANCE", "7.5", "default_guidance", 7.5),
    ("DEFAULT_NEGATIVE_PROMPT", "lowres", "default_negative_prompt", "lowres"),
    ("DTYPE", "bfloat16", "dtype", "bfloat16"),
    ("PER_USER_CAP", "2", "per_user_cap", 2),
    ("QUEUE_CAP", "10", "queue_cap", 10),
    ("MAX_BATCH", "8", "max_batch", 8),
    ("PREVIEW_INTERVAL", "0.5", "preview_interval", 0.5),
    ("BLOCKLIST", "foo, bar baz ,", "blocklist", ("foo", "bar baz")),
    ("FAST_LORA_ID", "", "fast_lora_id", ""),
    ("DELIVERY_FORMAT", "jpeg", "delivery_format", "jpeg"),
    ("VARY_STRENGTH", "0.35", "vary_strength", 0.35),
])
def test_variable_read_from_environment(monkeypatch: pytest.MonkeyPatch, env: str, value: str, field: str,
                                        expected: object) -> None:
    """Each pinned variable name is read from the process environment."""
    monkeypatch.setenv(env, value)
    assert getattr(load_engine_settings(), field) == expected


def test_variables_read_from_dotenv_file(tmp_path: Path) -> None:
    """A .env file in the working directory is read."""
    (tmp_path / ".env").write_text(
        "MODEL_ID=/models/ssd-1b\nDEVICE=cpu\nDATA_DIR=/var/lib/imagine\nSIZES=64x64,96x64\n"
        "DEFAULT_SIZE=96x64\nDEFAULT_STEPS=3\nDEFAULT_GUIDANCE=4.5\n", encoding="utf-8")
    s = load_engine_settings()
    assert (s.model_id, s.device, s.data_dir) == ("/models/ssd-1b", "cpu", Path("/var/lib/imagine"))
    assert (s.sizes, s.default_size) == ((Size(64, 64), Size(96, 64)), Size(96, 64))
    assert (s.default_steps, s.default_guidance) == (3, 4.5)


def test_environment_wins_over_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A variable set in the environment overrides the same one in .env."""
    (tmp_path / ".env").write_text("DEFAULT_STEPS=3\n", encoding="utf-8")
    monkeypatch.setenv("DEFAULT_STEPS", "7")
    assert load_engine_settings().default_steps == 7


def test_defaults_without_environment() -> None:
    """Nothing set: SSD-1B, auto device, ./data, 1024x1024, 25 steps, CFG 9.0 and the nine SDXL sizes."""
    s = load_engine_settings()
    assert (s.model_id, s.device, s.data_dir) == ("segmind/SSD-1B", "auto", Path("./data"))
    assert [str(x) for x in s.sizes] == SDXL_NINE
    assert (str(s.default_size), s.default_steps, s.default_guidance) == ("1024x1024", 25, 9.0)


def test_default_size_is_first_size_when_1024_not_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without DEFAULT_SIZE and without 1024x1024 in SIZES, the first listed size is the default."""
    monkeypatch.setenv("SIZES", "768x512,512x512")
    assert load_engine_settings().default_size == Size(768, 512)


@pytest.mark.parametrize(("env", "value", "fragments"), [
    ("DEVICE", "gpu", ["DEVICE", "auto, cpu, mps, cuda or cuda:N", "gpu"]),
    ("DTYPE", "float8", ["DTYPE", "float16", "bfloat16", "float32"]),
    ("SIZES", "1024", ["SIZES", "WIDTHxHEIGHT"]),
    ("SIZES", "100x100", ["SIZES", "multiple of 8 from 64 to 2048"]),
    ("SIZES", " , ", ["SIZES", "at least one"]),
    ("DEFAULT_SIZE", "512x512", ["DEFAULT_SIZE", "SIZES", "1024x1024", "640x1536"]),
    ("DEFAULT_SIZE", "big", ["DEFAULT_SIZE", "WIDTHxHEIGHT"]),
    ("DEFAULT_STEPS", "0", ["DEFAULT_STEPS", "from 1 to MAX_STEPS (60)"]),
    ("DEFAULT_STEPS", "many", ["DEFAULT_STEPS", "integer"]),
    ("DEFAULT_GUIDANCE", "25", ["DEFAULT_GUIDANCE", "from 0 to MAX_GUIDANCE (20.0)"]),
    ("DEFAULT_SCHEDULER", "plms", ["DEFAULT_SCHEDULER", "euler", "dpmpp_2m_karras", "unipc"]),
    ("MODEL_ID", "  ", ["MODEL_ID", "segmind/SSD-1B", "local directory"]),
    ("MAX_STEPS", "500", ["MAX_STEPS", "200"]),
    ("PER_USER_CAP", "0", ["PER_USER_CAP", "1"]),
    ("DELIVERY_FORMAT", "gif", ["DELIVERY_FORMAT", "webp", "jpeg", "png"]),
    ("VARY_STRENGTH", "0", ["VARY_STRENGTH", "0.05"]),
    ("VARY_STRENGTH", "1.5", ["VARY_STRENGTH", "1"]),
])
def test_wrong_value_names_variable_and_allowed_values(monkeypatch: pytest.MonkeyPatch, env: str, value: str,
                                                       fragments: list[str]) -> None:
    """A wrong value raises SettingsError whose text names the variable and what is allowed."""
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_engine_settings()
    for fragment in fragments:
        assert fragment in str(info.value)


def test_every_wrong_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two wrong variables give one error that names both."""
    monkeypatch.setenv("DEVICE", "gpu")
    monkeypatch.setenv("QUEUE_CAP", "0")
    with pytest.raises(SettingsError) as info:
        load_engine_settings()
    assert "DEVICE" in str(info.value) and "QUEUE_CAP" in str(info.value)


async def test_started_engine_defaults_follow_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          tiny_model_dir: Path) -> None:
    """On a first start, the engine's defaults and size list are the environment's."""
    for name, value in {"MODEL_ID": str(tiny_model_dir), "DEVICE": "cpu", "DATA_DIR": str(tmp_path / "data"),
                        "SIZES": "64x64,96x64", "DEFAULT_SIZE": "64x64", "DEFAULT_STEPS": "2",
                        "DEFAULT_GUIDANCE": "3.5", "FAST_LORA_ID": ""}.items():
        monkeypatch.setenv(name, value)
    engine = Engine(load_engine_settings())
    await engine.start()
    try:
        defaults = engine.policy.defaults()
        assert (defaults.size, defaults.steps, defaults.guidance) == ("64x64", 2, 3.5)
        assert engine.policy.limits.sizes == (Size(64, 64), Size(96, 64))
        assert (tmp_path / "data" / "imagine.sqlite3").is_file()
    finally:
        await engine.stop()


def test_every_engine_variable_is_in_env_example() -> None:
    """Every engine variable has a line in .env.example (DESIGN.md: every setting appears there)."""
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    fields = [*EngineSettings.model_fields, *AccelerationSettings.model_fields, *RemoteSettings.model_fields]
    names = [name.upper() for name in fields if name not in ("accel", "remote")]
    assert [n for n in names if not re.search(rf"^#?\s*{n}=", text, re.MULTILINE)] == []


def test_env_example_values_are_the_defaults() -> None:
    """Loading .env.example as it is gives exactly the built-in defaults."""
    example = load_engine_settings(_env_file=REPO / ".env.example")
    built_in = load_engine_settings(_env_file=None)
    assert {n: getattr(example, n) for n in EngineSettings.model_fields} == \
        {n: getattr(built_in, n) for n in EngineSettings.model_fields}


def test_the_operators_nsfw_policy_blurs_flagged_images_unless_told_otherwise(make_settings) -> None:
    """With a classifier and no NSFW_POLICY the operator's policy is spoiler; an explicit allow stands; outside
    servers NSFW_POLICY_ELSEWHERE wins, else NSFW_POLICY."""
    assert make_settings(safety_model_id="some/classifier").operator_nsfw_policy == "spoiler"
    assert make_settings().operator_nsfw_policy == "allow"
    explicit = make_settings(safety_model_id="some/classifier", nsfw_policy="ALLOW", nsfw_policy_elsewhere="block")
    assert (explicit.operator_nsfw_policy, explicit.elsewhere_nsfw_policy) == ("allow", "block")
