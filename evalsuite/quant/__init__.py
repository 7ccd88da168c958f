"""Quantized variants: the int4 grid of MatMulNBits (`grid`), the AWQ scale search (`awq`) and its
application to an HF folder (`awq_build`), and `variants.build_variant`, which turns a variant config
into a scored ONNX model (RTN, AWQ or a given file)."""
