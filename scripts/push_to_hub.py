#!/usr/bin/env python
"""Publish a resp_audio_hf checkpoint to the Hugging Face Hub; the same as `resp-audio-hf push`.

    python scripts/push_to_hub.py MODEL_DIR --repo-id org/resp-passt [--private] [--dry-run] [--benchmark results.json]
"""

import sys

from resp_audio_hf.commands.push import main

if __name__ == "__main__":
    sys.exit(main())
