"""AST fidelity: converted weights and our front end against transformers' ASTModel / ASTFeatureExtractor and against
the original YuanGongND/ast layout (a timm DeiT)."""

import json

import numpy as np
import pytest
import torch
import torchaudio
from safetensors.torch import save_file
from torch import nn
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, ASTModel

from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor, RespAudioForAudioClassification, RespAudioModel
from resp_audio_hf.convert import convert_ast

ATOL = 1e-4
FRAMES = 198  # transformers' AST needs inputs of exactly max_length frames; 198 keeps it fast
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, max_length=FRAMES)


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Random values in every parameter: transformers zero-initialises AST's tokens and position embeddings, and
    LayerNorms/biases start at 1/0, which would hide swapped or missing weights. LayerNorm gains stay near 1 so that
    attention is far from uniform and a wrong head split shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = 0.1 * torch.randn(parameter.shape, generator=generator)
            is_gain = name.endswith("weight") and parameter.ndim == 1
            parameter.copy_(noise + 1.0 if is_gain else noise)
    return module.eval()


@pytest.fixture(scope="module")
def ast_classifier():
    config = ASTConfig(**SMALL, num_labels=5, id2label={i: f"sound {i}" for i in range(5)})
    return randomize_(ASTForAudioClassification(config), seed=0)


@pytest.fixture(scope="module")
def hub_folder(ast_classifier, tmp_path_factory):
    """What `save_pretrained` writes (the Hub layout: query/key/value, intermediate/output dense)."""
    folder = tmp_path_factory.mktemp("ast-hub")
    ast_classifier.save_pretrained(folder)
    ASTFeatureExtractor(max_length=FRAMES, mean=-5.0, std=3.0).save_pretrained(folder)
    return folder


def spectrogram_batch(seed: int) -> torch.Tensor:
    return torch.randn(2, FRAMES, 128, generator=torch.Generator().manual_seed(seed))


def test_hub_folder_matches_ast_for_audio_classification(ast_classifier, hub_folder):
    converted = convert_ast(hub_folder)
    model = converted.model
    assert isinstance(model, RespAudioForAudioClassification)
    assert model.config.layer_norm_eps == ast_classifier.config.layer_norm_eps == 1e-12
    assert model.config.id2label == ast_classifier.config.id2label
    assert converted.unused_keys == []
    inputs = spectrogram_batch(1)
    with torch.no_grad():
        reference = ast_classifier(inputs, output_hidden_states=True)
        reference_base = ast_classifier.audio_spectrogram_transformer(inputs)
        ours = model(inputs)
        ours_base = model.resp_audio(inputs)
    torch.testing.assert_close(ours_base.pooler_output, reference_base.pooler_output, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours_base.last_hidden_state, reference_base.last_hidden_state, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.logits, reference.logits, atol=ATOL, rtol=0)


def test_hub_folder_front_end_takes_the_preprocessor_statistics(hub_folder):
    fe = convert_ast(hub_folder).feature_extractor
    reference = ASTFeatureExtractor.from_pretrained(hub_folder)
    clip = np.sin(np.arange(16000) * 0.05).astype(np.float32)
    expected = reference(clip, sampling_rate=16000, return_tensors="pt")["input_values"]
    ours = fe(clip, sampling_rate=16000, padding="max_length", max_length=FRAMES, truncation=True, return_tensors="pt")
    torch.testing.assert_close(ours["input_values"], expected, atol=ATOL, rtol=0)


def test_in_memory_layout_of_ast_model_matches(tmp_path):
    """transformers >= 5 keeps fused-free q/k/v_proj names in memory; a folder holding those keys converts too."""
    config = ASTConfig(**SMALL)
    reference = randomize_(ASTModel(config), seed=2)
    config.save_pretrained(tmp_path)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(tmp_path / "model.safetensors"))
    converted = convert_ast(tmp_path, pooling="cls")
    assert isinstance(converted.model, RespAudioModel)
    inputs = spectrogram_batch(3)
    with torch.no_grad():
        expected = reference(inputs)
        ours = converted.model(inputs)
    torch.testing.assert_close(ours.pooler_output, expected.pooler_output, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.last_hidden_state, expected.last_hidden_state, atol=ATOL, rtol=0)


def test_preset_model_with_shared_weights_matches_ast_model():
    """The other direction: our resp-ast preset (2 layers, 1024 frames) with its random weights copied into
    transformers' ASTModel gives the same pooler_output and tokens."""
    ours = randomize_(RespAudioModel(RespAudioConfig.from_preset("resp-ast", num_hidden_layers=2, pooling="cls")), 4)
    config = ours.config
    reference = ASTModel(
        ASTConfig(
            hidden_size=config.hidden_size, num_hidden_layers=2, num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size, layer_norm_eps=config.layer_norm_eps,
            max_length=config.window_frames,
        )
    ).eval()
    state = ours.state_dict()
    mapped = {
        "embeddings.cls_token": state["embeddings.cls_token"],
        "embeddings.distillation_token": state["embeddings.distillation_token"],
        "embeddings.position_embeddings": state["embeddings.position_embeddings"],
        "embeddings.patch_embeddings.projection.weight": state["embeddings.patch_embeddings.projection.weight"],
        "embeddings.patch_embeddings.projection.bias": state["embeddings.patch_embeddings.projection.bias"],
        "layernorm.weight": state["layernorm.weight"],
        "layernorm.bias": state["layernorm.bias"],
    }
    for index in range(2):
        ours_prefix, theirs = f"encoder.layers.{index}.", f"layers.{index}."
        for kind in ("weight", "bias"):
            q, k, v = state[f"{ours_prefix}attention.qkv.{kind}"].chunk(3)
            mapped.update({
                f"{theirs}attention.q_proj.{kind}": q,
                f"{theirs}attention.k_proj.{kind}": k,
                f"{theirs}attention.v_proj.{kind}": v,
                f"{theirs}attention.o_proj.{kind}": state[f"{ours_prefix}attention.proj.{kind}"],
                f"{theirs}layernorm_before.{kind}": state[f"{ours_prefix}layernorm_before.{kind}"],
                f"{theirs}layernorm_after.{kind}": state[f"{ours_prefix}layernorm_after.{kind}"],
                f"{theirs}mlp.fc1.{kind}": state[f"{ours_prefix}mlp.fc1.{kind}"],
                f"{theirs}mlp.fc2.{kind}": state[f"{ours_prefix}mlp.fc2.{kind}"],
            })
    reference.load_state_dict(mapped, strict=True)
    inputs = torch.randn(1, config.window_frames, 128, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = reference(inputs)
        got = ours(inputs)
    torch.testing.assert_close(got.pooler_output, expected.pooler_output, atol=ATOL, rtol=0)
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, atol=ATOL, rtol=0)


class OriginalAST(nn.Module):
    """YuanGongND/ast's ASTModel built as it does: a timm DeiT (distilled) with a stride-10 one-channel patch
    projection, an AST-sized position table and an `mlp_head` on the mean of the CLS and distillation tokens."""

    def __init__(self, num_labels: int = 5, dim: int = 64):
        super().__init__()
        from timm.models.deit import VisionTransformerDistilled

        self.v = VisionTransformerDistilled(
            img_size=(128, FRAMES), patch_size=16, in_chans=1, embed_dim=dim, depth=2, num_heads=4, num_classes=1000
        )
        self.v.patch_embed.proj = nn.Conv2d(1, dim, kernel_size=(16, 16), stride=(10, 10))
        grid = ((128 - 16) // 10 + 1) * ((FRAMES - 16) // 10 + 1)
        self.v.pos_embed = nn.Parameter(torch.zeros(1, grid + 2, dim))
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_labels))

    def forward(self, x):  # x: [batch, frames, mel], as in AST
        x = x.unsqueeze(1).transpose(2, 3)
        x = self.v.patch_embed.proj(x).flatten(2).transpose(1, 2)
        batch = x.shape[0]
        x = torch.cat((self.v.cls_token.expand(batch, -1, -1), self.v.dist_token.expand(batch, -1, -1), x), dim=1)
        x = x + self.v.pos_embed
        for block in self.v.blocks:
            x = block(x)
        x = self.v.norm(x)
        features = (x[:, 0] + x[:, 1]) / 2
        return self.mlp_head(features), features, x


def test_original_ast_state_dict_matches_its_forward(tmp_path):
    pytest.importorskip("timm")
    original = randomize_(OriginalAST(), seed=6)
    # As the released .pth files: saved from nn.DataParallel, with the DeiT's unused ImageNet heads inside.
    path = tmp_path / "audioset_10_10_0.4593.pth"
    torch.save({f"module.{k}": v for k, v in original.state_dict().items()}, path)
    converted = convert_ast(path, window_frames=FRAMES, num_attention_heads=4)
    assert sorted(converted.unused_keys) == ["head.bias", "head.weight", "head_dist.bias", "head_dist.weight"]
    assert converted.model.config.layer_norm_eps == 1e-6
    inputs = spectrogram_batch(7)
    with torch.no_grad():
        logits, features, tokens = original(inputs)
        ours = converted.model(inputs)
        ours_base = converted.model.resp_audio(inputs)
    torch.testing.assert_close(ours_base.pooler_output, features, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours_base.last_hidden_state, tokens, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.logits, logits, atol=ATOL, rtol=0)


def test_front_end_matches_ast_feature_extractor(sprsound_clips):
    """Real recordings at 16 kHz: a 5 s clip (padded) and an 18 s one (truncated) in one batch."""
    clips = [
        torchaudio.functional.resample(torch.from_numpy(audio), rate, 16000).numpy()
        for audio, rate in sprsound_clips[:3]
    ]
    clips = [clips[0][: 5 * 16000], np.concatenate([clips[1], clips[2]])]
    assert len(clips[1]) > 1024 * 160 + 400  # longer than AST's 1024 frames, so truncation is exercised
    expected = ASTFeatureExtractor()(clips, sampling_rate=16000, return_tensors="pt")["input_values"]
    fe = RespAudioFeatureExtractor.from_model_config(RespAudioConfig.from_preset("resp-ast"))
    ours = fe(clips, sampling_rate=16000, padding="max_length", max_length=1024, truncation=True, return_tensors="pt")
    assert ours["input_values"].shape == expected.shape == (2, 1024, 128)
    torch.testing.assert_close(ours["input_values"], expected, atol=ATOL, rtol=0)
    assert ours["attention_mask"][0].sum() == 1 + (5 * 16000 - 400) // 160
    assert ours["attention_mask"][1].all()


def test_converted_hub_folder_reports_its_labels(hub_folder, tmp_path):
    """id2label survives the conversion and the save, for pipelines that show class names."""
    from resp_audio_hf.convert import save_converted

    save_converted(convert_ast(hub_folder), tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["id2label"] == {str(i): f"sound {i}" for i in range(5)}
    assert saved["model_type"] == "resp_audio" and saved["pooling"] == "cls"
