"""The family table (`MODEL_FAMILIES`): every place that names a family reads it, and `window_frames` (formerly
`max_length`) still loads from configurations written before the rename."""

import json
import warnings
from pathlib import Path

import pytest

from resp_audio_hf import EfficientATConfig, RespAudioConfig, RespAudioFeatureExtractor
from resp_audio_hf.configuration_resp_audio import MODEL_FAMILIES, PRESETS, family_of_config
from resp_audio_hf.feature_extraction_resp_audio import FRONT_ENDS

# pretrained/small-m2d-resp/config.json as it was committed before the rename, with "max_length": 208.
OLD_CONFIG = Path(__file__).parent / "fixtures" / "config_before_window_frames" / "config.json"


def test_every_preset_belongs_to_one_family_and_takes_its_front_end():
    owners = {preset: name for name, family in MODEL_FAMILIES.items() for preset in family.presets}
    assert sorted(owners) == sorted(PRESETS)
    for preset, name in owners.items():
        config = RespAudioConfig.from_preset(preset)
        assert config.frontend == MODEL_FAMILIES[name].frontend
        assert family_of_config(config) is MODEL_FAMILIES[name]


def test_vit_layouts_agree_with_their_front_ends():
    """A preset's rate, mel bins and window are those its front end featurises by default (the two tables state them
    on two axes: the encoder's and the spectrogram's)."""
    for family in MODEL_FAMILIES.values():
        for preset in family.presets:
            config = RespAudioConfig.from_preset(preset)
            defaults = FRONT_ENDS[family.frontend].defaults
            assert (config.sampling_rate, config.num_mel_bins) == (defaults["sampling_rate"], defaults["num_mel_bins"])
        if family.presets:  # the published preset's window is the front end's padding target
            published = RespAudioConfig.from_preset(next(iter(family.presets)))
            assert published.window_frames == FRONT_ENDS[family.frontend].defaults["max_length"]


def test_efficientat_is_its_own_family_on_passt_features():
    family = family_of_config(EfficientATConfig())
    assert family.name == "efficientat" and family.frontend == "passt" and not family.presets


def test_converter_cli_and_cards_are_derived_from_the_table():
    from resp_audio_hf.cli import build_parser
    from resp_audio_hf.convert import CONVERTERS
    from resp_audio_hf.hub.card import DEFAULT_TEMPLATE_DIR, families_with_cards, load_card_facts

    assert sorted(CONVERTERS) == sorted(MODEL_FAMILIES)
    assert all(CONVERTERS[name].__name__ == family.converter for name, family in MODEL_FAMILIES.items())
    parser = build_parser()
    args = parser.parse_args(["convert", "--family", "efficientat", "in.pt", "out"])
    assert args.family == "efficientat"
    with pytest.raises(SystemExit):
        parser.parse_args(["convert", "--family", "resp-passt", "in.pt", "out"])
    assert families_with_cards() == ("passt", "ast", "m2d")
    for name in families_with_cards():
        facts = load_card_facts(name)
        assert (DEFAULT_TEMPLATE_DIR / f"{facts.name}.yaml").is_file()
        assert facts.architecture == MODEL_FAMILIES[name].architecture


def test_convert_refuses_options_the_family_does_not_take(tmp_path, capsys):
    from resp_audio_hf.cli import main

    assert main(["convert", "--family", "m2d", "in.pth", str(tmp_path / "out"), "--labels", "labels.json"]) == 2
    assert "--labels do not apply to --family m2d" in capsys.readouterr().err
    assert main(["convert", "--family", "efficientat", "in.pt", str(tmp_path / "out"), "--max-length", "300",
                 "--norm-mean", "-4.0"]) == 2
    assert "--window-frames, --norm-mean do not apply to --family efficientat" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_config_written_before_the_rename_loads_with_a_warning(tmp_path):
    saved = json.loads(OLD_CONFIG.read_text())
    assert saved["max_length"] == 208 and "window_frames" not in saved
    with pytest.warns(FutureWarning, match="window_frames"):
        config = RespAudioConfig.from_pretrained(OLD_CONFIG.parent)
    assert config.window_frames == 208 and config.max_length == 208
    assert config.num_time_patches == (208 - 16) // 16 + 1
    # Saved again, it is written under the new name only, and loads without a warning.
    config.save_pretrained(tmp_path)
    resaved = json.loads((tmp_path / "config.json").read_text())
    assert resaved["window_frames"] == 208 and "max_length" not in resaved
    # Fields added since the file was written are saved at their defaults, which keep its behaviour.
    added_since = {"initialization": "trunc_normal", "patch_time_size": None}
    assert {k: resaved[k] for k in added_since} == added_since
    ignored = ("window_frames", "transformers_version", *added_since)
    assert {k: v for k, v in resaved.items() if k not in ignored} == {
        k: v for k, v in saved.items() if k not in ("max_length", "transformers_version")
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert RespAudioConfig.from_pretrained(tmp_path).window_frames == 208


def test_shipped_config_loads_as_the_old_file_does():
    with pytest.warns(FutureWarning):
        old = RespAudioConfig.from_pretrained(OLD_CONFIG.parent)
    shipped = RespAudioConfig.from_pretrained(Path(__file__).parent / "fixtures" / "small_m2d_resp_retired")
    assert shipped.to_dict() == old.to_dict()


def test_max_length_keyword_and_attribute_still_work():
    with pytest.warns(FutureWarning, match="window_frames"):
        config = RespAudioConfig.from_preset("tiny-passt", max_length=300)
    assert config.window_frames == 300 and config.max_length == 300
    config.max_length = 400  # the old name writes the new field
    assert config.window_frames == 400 and config.num_time_patches == (400 - 16) // 10 + 1
    assert RespAudioFeatureExtractor.from_model_config(config).max_length == 400
