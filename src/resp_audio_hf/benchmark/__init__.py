"""OPERA-style evaluation of audio encoders: linear probes, metrics and reports over the embeddings of
`resp_audio_hf.extraction`.

Imports are lazy so `import resp_audio_hf.benchmark` stays cheap; scikit-learn, scipy and matplotlib
are loaded by the functions that use them (`pip install resp_audio_hf[benchmark]`).

* `train_linear_probes` - OPERA's linear probe, vectorised over seeds/folds.
* `PROBE_PROTOCOLS` / `ProbeProtocol` - every task's probe hyper-parameters (OPERA's), in one table.
* `run_benchmark` / `write_reports` - what `resp-audio-hf bench` runs, with `BenchmarkArguments`.
* `BenchmarkResult` / `load_results` / `METRICS` - the typed `results.json` and the metric table.
* `run_demo` - what `resp-audio-hf demo` runs.
* `nonlearned_encoder` - the log-mel statistics and clip-duration baselines as encoders.
* `derive_pooling` / `signal_rows` - mean and band-limited pooling from frequency-preserving embeddings.
* `paired_bootstrap` - two models' score difference with a confidence interval over test patients.
"""

from .._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        ".baselines": ("OPERA_BASELINE_METHODS", "OPERA_PUBLISHED_RESULTS"),
        ".demo": ("DemoConfig", "run_demo"),
        ".metrics": ("auroc_ovr_macro", "icbhi_scores", "mean_absolute_error", "mean_reciprocal_rank"),
        "..data.probe_protocols": ("PROBE_PROTOCOLS", "ProbeProtocol", "protocol_table"),
        ".probe": ("ProbeOutcome", "ProbeRun", "train_linear_probes", "standardize_features"),
        ".nonlearned": ("nonlearned_encoder", "NONLEARNED_BASELINES"),
        ".pooling": ("derive_pooling", "signal_rows"),
        ".paired": ("PairedComparison", "paired_bootstrap"),
        ".runner": ("embed_task", "check_task_splits", "evaluate_task", "run_benchmark", "score_task"),
        ".report": ("markdown_table", "write_reports"),
        ".arguments": ("BenchmarkArguments",),
        "..data.metric_specs": ("METRICS",),
        ".results": ("BenchmarkResult", "TaskResult", "load_results"),
    },
)
