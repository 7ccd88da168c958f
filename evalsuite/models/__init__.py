"""Models and runners: resolve a model source to a local HF folder (`source`), build ONNX models
(`onnx_build`), find and check ONNX files (`onnx_files`), and run windows to logits (`ort_runner`,
`torch_runner`, with `logits_tail` slicing the lm_head; `scoring/` turns logits into NLL)."""
