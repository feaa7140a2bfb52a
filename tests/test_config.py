"""Session settings from YAML: the decoder section and its errors."""

from __future__ import annotations

import pytest

from streamcodec.config import ConfigError, DecoderConfig, SessionConfig, load_config

from .conftest import ROOT


def test_default_config_names_every_decoder_setting():
    """configs/default.yaml spells out the decoder section with the built-in defaults."""
    text = (ROOT / "configs" / "default.yaml").read_text()
    assert all(f"  {k}:" in text for k in ("name", "weights", "background"))
    assert load_config().decoder == DecoderConfig()


def test_a_partial_config_is_the_default_plus_its_settings():
    """Sections a file leaves out take the built-in defaults, which default.yaml spells out, so
    configs/still_camera.yaml needs only its decoder section."""
    assert load_config() == SessionConfig()
    still = load_config(ROOT / "configs" / "still_camera.yaml")
    assert still.decoder == DecoderConfig(background="key")
    assert {k: v for k, v in vars(still).items() if k != "decoder"} == \
        {k: v for k, v in vars(SessionConfig()).items() if k != "decoder"}


@pytest.mark.parametrize("yaml_text, expected", [
    ("decoder: learned\n", DecoderConfig(name="learned")),
    ("decoder:\n  name: learned\n  weights: runs/v2/final.safetensors\n  background: key\n",
     DecoderConfig(name="learned", weights="runs/v2/final.safetensors", background="key")),
])
def test_decoder_section_forms(tmp_path, yaml_text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    assert load_config(path).decoder == expected


@pytest.mark.parametrize("yaml_text, message", [
    ("decoder: vae\n", "unknown decoder 'vae'"),
    ("decoder:\n  background: blur\n", "background 'blur'"),
    ("decoder:\n  weight: x.safetensors\n", "unknown settings \\['weight'\\]"),
    ("decoder: [warp]\n", "a name or a mapping"),
])
def test_bad_decoder_settings_name_the_file(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert "bad.yaml" in str(info.value)
