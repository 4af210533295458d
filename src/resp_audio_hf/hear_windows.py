"""
Scene embeddings windowed as PaSST's HEAR wrapper windows them, for clips longer than one window.

`RespAudioModel` encodes a long clip in consecutive, non-overlapping windows of the spectrogram (as M2D's runtime
does). hear21passt's `PasstBasicWrapper.get_scene_embeddings` instead embeds a clip longer than 10 s as the mean of
10 s windows taken every 2.5 s over the waveform reflect-padded by half a window at both ends, each window's
spectrogram computed on its own; clips up to 10 s are embedded whole. [`hear_scene_embeddings`] reproduces that
windowing with any RespAudio encoder and its feature extractor, for comparisons with results obtained through the HEAR
API.
"""

from __future__ import annotations

import torch

HEAR_WINDOW_SECONDS = 10.0  # hear21passt's `max_model_window` (10000 ms)
HEAR_HOP_SECONDS = 2.5  # hear21passt's `scene_hop` (2500 ms)


def hear_scene_embeddings(
    model,
    feature_extractor,
    audio,
    sampling_rate: int,
    window_seconds: float = HEAR_WINDOW_SECONDS,
    hop_seconds: float = HEAR_HOP_SECONDS,
) -> torch.Tensor:
    """
    `[clips, config.pooled_size]` scene embeddings of one clip or a list of clips, windowed as hear21passt's HEAR
    wrapper does (see the module docstring): a clip of at most `window_seconds` at the model's rate is embedded whole
    (`model(**feature_extractor(clip)).pooler_output`); a longer one is reflect-padded by half a window at both ends,
    cut into windows of `window_seconds` every `hop_seconds`, and the `pooler_output`s of the windows, each featurised
    and encoded alone, are averaged with equal weights. Computed without gradients; put the model in eval mode first.

    Args:
        model ([`RespAudioModel`]): the encoder (for a classifier, pass its `resp_audio`).
        feature_extractor ([`RespAudioFeatureExtractor`]): its front end. Every clip is checked as by its `__call__`
            and resampled to its rate first, so that windows are cut at the model's rate, as hear21passt cuts them.
        audio: one clip or a list of clips (1-D, or 2-D mono/stereo), of any length. Decode a file first as `bench`
            does, `resp_audio_hf.data.audio.load_audio(path, feature_extractor.sampling_rate)`, for its features.
        sampling_rate (`int`): rate of `audio` in Hz.
        window_seconds, hop_seconds (`float`): window length and hop (default: hear21passt's 10 s and 2.5 s).
    """
    if not 0 < hop_seconds <= window_seconds:
        raise ValueError(f"Need 0 < hop_seconds <= window_seconds, got {hop_seconds} and {window_seconds}.")
    feature_extractor.check_sampling_rate(sampling_rate)
    clips = list(audio) if isinstance(audio, (list, tuple)) else [audio]
    rate = feature_extractor.sampling_rate
    window, hop = round(window_seconds * rate), round(hop_seconds * rate)
    embeddings = []
    with torch.no_grad():
        for index, clip in enumerate(clips):
            clip = feature_extractor.validated_clip(clip, index)
            if sampling_rate != rate:
                from .resampling import resample  # torchaudio's filter, in bounded memory at any pair of rates

                clip = resample(clip, int(sampling_rate), rate)
            if clip.numel() <= window:
                inputs = feature_extractor(clip, sampling_rate=rate, return_tensors="pt")
                embeddings.append(model(**inputs).pooler_output)
                continue
            pad = window // 2
            padded = torch.nn.functional.pad(clip[None, None], (pad, pad), mode="reflect")[0, 0]
            windows = padded.unfold(0, window, hop)
            # Equal lengths and no padding: the log-mel frames of each window are exactly what `__call__` would give
            # it, without refusing a window that happens to be silent inside a recording that is not.
            pooled = []
            for start in range(0, windows.shape[0], model.config.window_batch_size):
                batch = windows[start : start + model.config.window_batch_size]
                lengths = torch.full((batch.shape[0],), window)
                features = feature_extractor.log_mel(batch.contiguous(), lengths)
                pooled.append(model(input_values=features).pooler_output)
            embeddings.append(torch.cat(pooled).mean(dim=0, keepdim=True))
    return torch.cat(embeddings)


__all__ = ["HEAR_HOP_SECONDS", "HEAR_WINDOW_SECONDS", "hear_scene_embeddings"]
