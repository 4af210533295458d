"""M2D pre-training, fine-tuning and export of resp_audio_hf encoders (the `train` extra: accelerate, omegaconf).

Nothing here is imported by `import resp_audio_hf`. The commands are modules (`python -m
resp_audio_hf.training.pretrain`, `accelerate launch -m resp_audio_hf.training.pretrain`) and, in a checkout, the
scripts `training/pretrain.py`, `training/finetune.py` and `training/export_pretrained.py`, which call them.
"""
