"""`python training/pretrain.py ...` (or under `accelerate launch` / `torchrun`): runs `resp_audio_hf.training.pretrain`."""

from resp_audio_hf.training.pretrain import main

if __name__ == "__main__":
    main()
