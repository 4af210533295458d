"""`python -m resp_audio_hf`, the same command line as `resp-audio-hf`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
