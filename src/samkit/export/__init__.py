"""Export and alternative runtimes (optional extra `samkit[onnx]`).

`samkit.export.sam`: ONNX export of SAM 1, `samkit.export.sam2`: of SAM 2 / 2.1 (torch
needed); `samkit.export.ort_sam`: `OnnxSamPredictor` (SAM 1 files) and
`samkit.export.ort_sam2`: `OnnxSam2Predictor` (SAM 2 files) on onnxruntime (numpy +
PIL + onnxruntime only); `samkit.cli.export`: the `samkit export onnx` command. Nothing is
imported here, so importing the predictor stays torch-free.
"""
