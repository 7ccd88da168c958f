"""Compute the language-model head only for the positions that are scored.

A window of m inputs scores only its last k targets (k = stride after the first window), yet an
exported decoder applies the lm_head MatMul ([m, hidden] x [hidden, V]) to every position: for
SmolLM2 that is ~20 % of the model's FLOPs and an [m, V] float32 output (403 MB at m = 2048). This
module rewrites the graph in memory so ONNX Runtime slices the head's input to its last k rows
first, with k fed as an extra input (`evalsuite_logits_to_keep`, int64 [1]):

    hidden [1, m, H] -> Slice(starts=-k, axis=1) -> [1, k, H] -> MatMul / MatMulNBits -> logits [1, k, V]

Where every attention node is ONNX Runtime's GroupQueryAttention with its own rotary embedding and
no sliding window, the edit also feeds each node its optional `position_ids` and `attention_bias`
inputs (`evalsuite_position_ids`, `evalsuite_attention_bias`), so several requests can share one
run after a common context: each request's positions continue the context's and a bias hides the
other requests from it (ort_runner.logits_packed). Windows feed a zero bias and their own
positions: their logits are those of the unedited graph (tests/test_onnx.py).

The rows kept go through the same kernel with the same weights, so their logits are bit-identical
to the full graph's (tests/test_onnx.py). The model file on disk is never changed: the edited proto
is passed as bytes and its external data is read from the model's own folder. Graphs whose
`logits` come from anything but a MatMul / MatMulNBits, or whose `model.onnx` embeds its weights
(over `MAX_GRAPH_BYTES`), are left alone and scored with full logits.
"""

from __future__ import annotations

from pathlib import Path

KEEP_INPUT = "evalsuite_logits_to_keep"
POSITIONS_INPUT = "evalsuite_position_ids"  # int64 [b, S]: GroupQueryAttention's rotary positions
BIAS_INPUT = "evalsuite_attention_bias"  # float32 [1, 1, S, T]: added to every attention score
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
    pack_inputs(graph)
    return proto.SerializeToString()


def pack_inputs(graph: object) -> bool:
    """Wire POSITIONS_INPUT and BIAS_INPUT into every GroupQueryAttention node (slots 9 and 10) when
    each one applies its own rotary embedding over the whole context; False (graph unchanged) else."""
    from onnx import TensorProto, helper

    nodes = [n for n in graph.node if n.op_type == "GroupQueryAttention"]  # type: ignore[attr-defined]
    names = {i.name for i in graph.input}  # type: ignore[attr-defined]
    if not nodes or "position_ids" in names or POSITIONS_INPUT in names:
        return False
    for node in nodes:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("do_rotary") != 1 or attrs.get("local_window_size", -1) != -1 or any(node.input[9:]):
            return False
    graph.input.extend([  # type: ignore[attr-defined]
        helper.make_tensor_value_info(POSITIONS_INPUT, TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info(BIAS_INPUT, TensorProto.FLOAT, [1, 1, "sequence_length",
                                                                      "total_sequence_length"])])
    for node in nodes:
        while len(node.input) < 11:
            node.input.append("")
        node.input[9], node.input[10] = POSITIONS_INPUT, BIAS_INPUT
    return True
