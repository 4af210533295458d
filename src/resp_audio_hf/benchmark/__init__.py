"""OPERA-style evaluation of audio encoders: embeddings, linear probes, metrics and reports.

Imports are lazy so ``import resp_audio_hf.benchmark`` stays cheap; scikit-learn, scipy and matplotlib
are loaded by the functions that use them (``pip install resp_audio_hf[benchmark]``).

* ``AudioEncoder`` - any transformers audio model + feature extractor -> one vector per clip.
* ``extract_embeddings`` - streamed, batched, cached and resumable extraction.
* ``train_linear_probes`` - OPERA's linear probe, vectorised over seeds/folds.
* ``PROBE_PROTOCOLS`` / ``ProbeProtocol`` - every task's probe hyper-parameters (OPERA's), in one table.
* ``run_benchmark`` / ``write_reports`` - what ``resp-audio-hf bench`` runs.
* ``run_demo`` - what ``resp-audio-hf demo`` runs.
* ``nonlearned_encoder`` - the log-mel statistics and clip-duration baselines as encoders.
* ``derive_pooling`` / ``signal_rows`` - mean and band-limited pooling from frequency-preserving embeddings.
* ``paired_bootstrap`` - two models' score difference with a confidence interval over test patients.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "OPERA_BASELINE_METHODS": ".baselines",
    "OPERA_PUBLISHED_RESULTS": ".baselines",
    "DemoConfig": ".demo",
    "run_demo": ".demo",
    "ArrayClipDataset": ".embeddings",
    "AudioEncoder": ".embeddings",
    "ClipFailureError": ".embeddings",
    "FeatureCollator": ".embeddings",
    "FileClipDataset": ".embeddings",
    "extract_embeddings": ".embeddings",
    "make_dataloader": ".embeddings",
    "auroc_ovr_macro": ".metrics",
    "icbhi_scores": ".metrics",
    "mean_absolute_error": ".metrics",
    "mean_reciprocal_rank": ".metrics",
    "PROBE_PROTOCOLS": ".protocols",
    "ProbeProtocol": ".protocols",
    "protocol_table": ".protocols",
    "ProbeOutcome": ".probe",
    "ProbeRun": ".probe",
    "train_linear_probes": ".probe",
    "standardize_features": ".probe",
    "nonlearned_encoder": ".nonlearned",
    "NONLEARNED_BASELINES": ".nonlearned",
    "derive_pooling": ".pooling",
    "signal_rows": ".pooling",
    "PairedComparison": ".paired",
    "paired_bootstrap": ".paired",
    "embed_task": ".runner",
    "markdown_table": ".report",
    "write_reports": ".report",
    "BenchmarkResult": ".runner",
    "TaskResult": ".runner",
    "check_task_splits": ".runner",
    "evaluate_task": ".runner",
    "run_benchmark": ".runner",
    "score_task": ".runner",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
