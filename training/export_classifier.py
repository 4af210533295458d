"""`python training/export_classifier.py ...`: runs `resp_audio_hf.training.export_classifier`."""

from resp_audio_hf.training.export_classifier import main

if __name__ == "__main__":
    main()
