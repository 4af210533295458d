"""`python training/finetune.py ...` (or under `accelerate launch` / `torchrun`): runs `resp_audio_hf.training.finetune`."""

from resp_audio_hf.training.finetune import main

if __name__ == "__main__":
    main()
