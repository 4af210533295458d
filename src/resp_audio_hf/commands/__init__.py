"""Argument definitions and handlers of `resp-audio-hf embed`, `convert` and `push` (see `resp_audio_hf.cli`)."""
