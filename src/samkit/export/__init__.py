"""Export and alternative runtimes (optional extra `samkit[onnx]`).

`samkit.export.onnx`: ONNX export of SAM 1, `samkit.export.onnx_sam2`: of SAM 2 / 2.1 (torch
needed); `samkit.export.ort_predictor`: `OnnxSamPredictor` (SAM 1 files) and
`samkit.export.ort_sam2_predictor`: `OnnxSam2Predictor` (SAM 2 files) on onnxruntime (numpy +
PIL + onnxruntime only); `samkit.export.cli`: the `samkit export onnx` command. Nothing is
imported here, so importing the predictor stays torch-free.
"""
