#!/usr/bin/env python
"""Convert an original PaSST, AST, M2D or EfficientAT checkpoint into a Hugging Face folder; the same as
`resp-audio-hf convert`.

    python scripts/convert_checkpoint.py --family passt passt-s-f128-p16-s10-ap.476-swa.pt out/passt
"""

import sys

from resp_audio_hf.commands.convert import main

if __name__ == "__main__":
    sys.exit(main())
