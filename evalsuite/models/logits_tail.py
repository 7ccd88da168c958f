"""Compute the language-model head only for the positions that are scored.

A window of m inputs scores only its last k targets (k = stride after the first window), yet an
exported decoder applies the lm_head MatMul ([m, hidden] x [hidden, V]) to every position: for
SmolLM2 that is ~20 % of the model's FLOPs and an [m, V] float32 output (403 MB at m = 2048). This
module rewrites the graph in memory so ONNX Runtime slices the head's input to its last k rows
first, with k fed as an extra input (`evalsuite_logits_to_keep`, int64 [1]):

    hidden [1, m, H] -> Slice(starts=-k, axis=1) -> [1, k, H] -> MatMul / MatMulNBits -> logits [1, k, V]

The rows kept go through the same kernel with the same weights, so their logits are bit-identical
to the full graph's (tests/test_onnx.py). The model file on disk is never changed: the edited proto
is passed as bytes and its external data is read from the model's own folder. Graphs whose
`logits` come from anything but a MatMul / MatMulNBits, or whose `model.onnx` embeds its weights
(over `MAX_GRAPH_BYTES`), are left alone and scored with full logits.
"""

from __future__ import annotations

from pathlib import Path

KEEP_INPUT = "evalsuite_logits_to_keep"
MAX_GRAPH_BYTES = 64 * 2**20  # only graph-only files (weights in external data) are re-serialized
HEAD_OPS = {"MatMul", "MatMulNBits"}


def tail_model(model: Path) -> bytes | None:
    """The serialized graph with the lm_head input sliced to the last k positions, or None."""
    import onnx
    from onnx import TensorProto, helper

    if model.stat().st_size > MAX_GRAPH_BYTES:
        return None
    proto = onnx.load(str(model), load_external_data=False)
    graph = proto.graph
    if KEEP_INPUT in {i.name for i in graph.input}:
        return None
    heads = [n for n in graph.node if "logits" in n.output]
    if len(heads) != 1 or heads[0].op_type not in HEAD_OPS:
        return None
    head = heads[0]
    graph.input.append(helper.make_tensor_value_info(KEEP_INPUT, TensorProto.INT64, [1]))
    graph.initializer.extend([helper.make_tensor("evalsuite_axis_1", TensorProto.INT64, [1], [1]),
                              helper.make_tensor("evalsuite_end", TensorProto.INT64, [1], [2**62])])
    neg = helper.make_node("Neg", [KEEP_INPUT], ["evalsuite_neg_keep"], name="/evalsuite/Neg")
    tail = helper.make_node("Slice", [head.input[0], "evalsuite_neg_keep", "evalsuite_end", "evalsuite_axis_1"],
                            ["evalsuite_head_input"], name="/evalsuite/Slice")
    head.input[0] = "evalsuite_head_input"
    at = list(graph.node).index(head)
    graph.node.insert(at, tail)
    graph.node.insert(at, neg)
    for out in graph.output:
        if out.name == "logits" and len(out.type.tensor_type.shape.dim) == 3:
            out.type.tensor_type.shape.dim[1].dim_param = "logits_kept"
    return proto.SerializeToString()
