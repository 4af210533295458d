"""The checkout's own folders, for tests that read what the repository ships."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# EfficientAT mn04 with its AudioSet weights, the one real model the repository ships.
MN04_DIR = REPO_ROOT / "pretrained" / "efficientat-mn04-as"
