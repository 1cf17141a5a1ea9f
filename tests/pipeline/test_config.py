"""Config: defaults, YAML, deep-merged overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from talkmill.config import DEFAULT_PRESENTER, PipelineConfig, load_config
from talkmill.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_YAML = REPO_ROOT / "configs" / "default.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "pipeline.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_default_yaml_equals_the_built_in_defaults_and_documents_every_key() -> None:
    assert load_config(DEFAULT_YAML) == load_config() == PipelineConfig()
    assert load_config().presenter == str(DEFAULT_PRESENTER) and DEFAULT_PRESENTER.is_file()
    text = DEFAULT_YAML.read_text()

    def keys(model: type[BaseModel]) -> list[str]:
        found = []
        for name, field in model.model_fields.items():
            found.append(name)
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                found += keys(field.annotation)
        return found

    assert [key for key in keys(PipelineConfig) if f"{key}:" not in text] == []


def test_relative_presenter_paths_resolve_against_the_config_file_or_the_cwd(tmp_path, monkeypatch) -> None:
    path = write(tmp_path, "presenter: faces/anna.png\n")
    assert load_config(path).presenter == str(tmp_path / "conf" / "faces" / "anna.png")
    monkeypatch.chdir(tmp_path)
    assert load_config(path, {"presenter": "cli.png"}).presenter == str(tmp_path / "cli.png")
    assert load_config(None, {"presenter": "https://x.example/a.jpg"}).presenter == "https://x.example/a.jpg"


def test_overrides_deep_merge_over_the_file(tmp_path) -> None:
    path = write(tmp_path, "backend:\n  url: http://engine:8000\n  concurrency: 6\nsplit: {max_chars: 400}\n")
    merged = load_config(path, {"backend": {"wait": "poll"}, "output": "s3://videos/run",
                                "split.max_chars": 300, "driver_url": None})
    assert merged.backend.url == "http://engine:8000" and merged.backend.concurrency == 6  # kept
    assert merged.backend.wait == "poll" and merged.output == "s3://videos/run"
    assert merged.split.max_chars == 300
    assert merged.driver_url is None
    # None means "not given" (a CLI passes its unset options as they are)
    assert load_config(path, {"backend": {"url": None}}).backend.url == "http://engine:8000"


def test_unknown_keys_are_named_with_what_is_allowed(tmp_path) -> None:
    path = write(tmp_path, "backend:\n  urll: http://x\nvoices: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert "backend.urll: unknown key; allowed here: url, key_env, concurrency" in message
    assert "voices: unknown key; allowed here: presenter, voice, driver_url" in message
    with pytest.raises(ConfigError, match="talk_config.stich: unknown key; allowed here: stitch"):
        load_config(None, {"talk_config": {"stich": True}})


def test_bad_values_name_the_key_and_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"backend": {"wait": "sometimes", "concurrency": 0, "poll_interval": 20},
                           "talk_config": {"result_format": "webm"}, "presenter": "notes.txt"})
    message = str(caught.value)
    assert "backend.wait: Input should be 'webhook' or 'poll' (got 'sometimes')" in message
    assert "backend.concurrency: Input should be greater than or equal to 1 (got 0)" in message
    assert "talk_config.result_format:" in message and "'webm'" in message
    assert "presenter: " in message and "use a .jpg, .jpeg, .png or .webp file" in message
    with pytest.raises(ConfigError, match="backend: poll_max_interval must be at least poll_interval"):
        load_config(None, {"backend": {"poll_interval": 20}})


def test_unreadable_files_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match=r"pipeline.yaml: not valid YAML at line \d+, column \d+"):
        load_config(write(tmp_path, "backend:\n  url: [unclosed\n"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    assert load_config(write(tmp_path, "# only comments\n")) == PipelineConfig()


def test_talk_values_are_bounded_by_the_contract() -> None:
    from talkmill.config import SplitConfig, TalkConfig
    from talks_contract.formats import RESULT_FORMATS
    from talks_contract.limits import TEXT_MAX_CHARS

    assert [TalkConfig(result_format=name).result_format for name in RESULT_FORMATS] == list(RESULT_FORMATS)
    assert SplitConfig(max_chars=TEXT_MAX_CHARS).max_chars == TEXT_MAX_CHARS
    refused = f"split.max_chars: Input should be less than or equal to {TEXT_MAX_CHARS}"
    with pytest.raises(ConfigError, match=refused):
        load_config(None, {"split": {"max_chars": TEXT_MAX_CHARS + 1}})


def test_the_s3_region_is_a_setting_of_its_own(tmp_path) -> None:
    path = write(tmp_path, "s3: {endpoint_url: 'http://127.0.0.1:8333', region: eu-west-3}\n")
    settings = load_config(path).s3
    assert (settings.endpoint_url, settings.region) == ("http://127.0.0.1:8333", "eu-west-3")
