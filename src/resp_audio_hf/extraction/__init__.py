"""The extraction engine: audio clips in, one embedding per clip out, what `embed`, `bench`, the Hub's results and the
demo share.

* [`AudioEncoder`] / [`load_encoder`] / [`EncoderLoadError`] - a transformers audio model plus its feature extractor,
  loaded from a folder, a Hub id, a preset or an exported ONNX folder (`encoder`).
* [`ClipDataset`] - the protocol every clip dataset implements; [`FileClipDataset`], [`ArrayClipDataset`],
  [`DatasetClipDataset`] (`clips`).
* [`extract_embeddings`] - batched, streamed extraction in DataLoader workers, each failed clip named
  ([`ClipFailureError`]), through [`FeatureCollator`] / [`make_dataloader`] (`extract`).
* [`EmbeddingCache`] / [`embedding_cache_key`] / [`cache_entries`] - the resumable, locked, checksummed on-disk cache
  (`cache`).

Imports are lazy, so `import resp_audio_hf.extraction` does not load torch.
"""

from .._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        ".cache": ("CACHE_FORMAT_VERSION", "EmbeddingCache", "cache_entries", "embedding_cache_key"),
        ".clips": ("ArrayClipDataset", "ClipDataset", "DatasetClipDataset", "FileClipDataset"),
        ".encoder": ("AudioEncoder", "EncoderLoadError", "load_encoder"),
        ".extract": ("ClipFailureError", "FeatureCollator", "extract_embeddings", "make_dataloader"),
    },
)
