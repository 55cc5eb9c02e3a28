"""Export and alternative runtimes (optional extra `samkit[onnx]`).

`samkit.export.onnx`: ONNX export of SAM 1 (torch needed); `samkit.export.ort_predictor`:
`OnnxSamPredictor` on onnxruntime (numpy + PIL + onnxruntime only); `samkit.export.cli`: the
`samkit export onnx` command. Nothing is imported here, so importing the predictor stays torch-free.
"""
