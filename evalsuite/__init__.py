"""evalsuite: perplexity and accuracy gate for quantized (int4 ONNX) language models."""

__version__ = "0.1.0"
