"""Exported forms of the models: ONNX (`resp-audio-hf export --format onnx`).

`onnx` (export, torch) writes a folder that `onnx_runtime` (numpy and onnxruntime only) runs and that
`onnx_encoder` (the feature extractor in torch, the network in onnxruntime) plugs into `embed` and the pipeline.
"""
