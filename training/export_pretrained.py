"""`python training/export_pretrained.py ...` (or under `accelerate launch` / `torchrun`): runs `resp_audio_hf.training.export_pretrained`."""

from resp_audio_hf.training.export_pretrained import main

if __name__ == "__main__":
    main()
