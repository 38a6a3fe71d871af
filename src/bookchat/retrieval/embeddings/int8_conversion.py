"""The bundled model prepared for integer arithmetic: its weight-only int8 MatMuls converted to dynamic int8, once."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bookchat.retrieval.embeddings.base import EmbeddingError

if TYPE_CHECKING:
    import onnx

# The package's name, as before it was split into modules: log settings and the `logger` of each record stay.
log = logging.getLogger("bookchat.retrieval.embeddings")

# What `dynamic_int8_model` does, hashed with the source file into the converted file's name: any change to the
# conversion must change this, so that a file made the old way is never loaded.
DYNAMIC_INT8_RECIPE = "fold-cast-mul/drop-softmax-nan-guard/quantize_dynamic-matmul-qint8-per-column/v1"


def dynamic_int8_model(source: Path, cache_dir: Path, *, name: str) -> Path:
    """`source` with its MatMuls on int8 at run time: converted into `cache_dir` on first use, loaded from there after.

    The bundled file is weight-only int8: each weight is stored as int8 with one scale per output column and turned
    back into floats (Cast, Mul) when the session loads, so every MatMul runs in fp32. Here those weights are folded
    to floats and handed to onnxruntime's dynamic quantizer, which stores them as int8 again and quantizes each
    activation to uint8 per run, so the MatMuls run on integer instructions: twice the throughput on 2 cores with
    AVX-512 VNNI, the NaN guards dropped on the way included.

    The file is named after a hash of `source` and of the recipe. It is written under a temporary name and renamed,
    so that two processes converting at once each write their own file and a reader never sees half of one.
    """
    if not source.is_file():
        raise EmbeddingError(f"embedding model file {source} does not exist")
    with source.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
    digest.update(DYNAMIC_INT8_RECIPE.encode())
    target = cache_dir / f"{name}-{digest.hexdigest()[:16]}.onnx"
    if target.is_file():
        return target
    log.info("converting the embedding model %s to dynamic int8 once, into %s", source, target)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=cache_dir, prefix=f".{target.stem}-", suffix=".tmp")
        os.close(descriptor)
        try:
            _convert_to_dynamic_int8(source, Path(temporary))
            # mkstemp makes the file private; the model is no secret, and another account may serve the same folder.
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        finally:
            Path(temporary).unlink(missing_ok=True)
    except OSError as exc:
        raise EmbeddingError(f"cannot write the converted embedding model into {cache_dir}: {exc}") from exc
    return target


def _convert_to_dynamic_int8(source: Path, target: Path) -> None:
    try:
        import onnx
        from onnxruntime.quantization import (  # type: ignore[import-untyped, unused-ignore]
            QuantType,
            quantize_dynamic,
        )
    except ImportError as exc:  # pragma: no cover - onnx is a dependency
        raise EmbeddingError("the `onnx` package is needed to prepare the local embedding model") from exc
    model = onnx.load(str(source))
    # The quantizer only takes MatMuls whose weight is a constant: the Cast and Mul in front hide it.
    _fold_weight_only_int8(model)
    _drop_softmax_nan_guards(model)
    # Through a file: older onnxruntime versions take no ModelProto.
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch, _quantizer_logs_dropped():
        folded = Path(scratch) / "folded.onnx"
        onnx.save(model, str(folded))
        quantize_dynamic(
            folded,
            target,
            op_types_to_quantize=["MatMul"],
            weight_type=QuantType.QInt8,
            # One symmetric scale per output column, as in the bundled file, where every column spans -127..127:
            # each weight gets back exactly its bundled integer and scale. Only the activations lose precision.
            per_channel=True,
            # Full 8-bit weights. x86 CPUs without VNNI add pairs of uint8 x int8 products in 16 bits, which can
            # saturate; emulated on this model that moved the embeddings less than 7-bit weights (reduce_range)
            # move them on every CPU (cosine to the fp32 run 0.992 against 0.991; 0.994 with VNNI).
            reduce_range=False,
        )


def _fold_weight_only_int8(model: onnx.ModelProto) -> None:
    """Turn each int8 initializer that is cast to float and scaled (Cast, Mul) for MatMuls alone into that float
    weight. The embedding tables (read by Gather) stay int8 in the file, as they were."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    consumers: defaultdict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    folded: list[onnx.TensorProto] = []
    dropped_outputs: set[str] = set()
    dropped_tensors: set[str] = set()
    for cast in graph.node:
        to = next((attribute.i for attribute in cast.attribute if attribute.name == "to"), None)
        if cast.op_type != "Cast" or to != TensorProto.FLOAT or cast.input[0] not in initializers:
            continue
        if len(consumers[cast.output[0]]) != 1:
            continue
        mul = consumers[cast.output[0]][0]
        scales = [name for name in mul.input if name != cast.output[0]]
        users = consumers[mul.output[0]]
        if (
            mul.op_type != "Mul"
            or len(scales) != 1
            or scales[0] not in initializers
            or not users
            or any(user.op_type != "MatMul" for user in users)
        ):
            continue
        quantized = numpy_helper.to_array(initializers[cast.input[0]])
        scale = numpy_helper.to_array(initializers[scales[0]])
        folded.append(numpy_helper.from_array((quantized.astype(np.float32) * scale).astype(np.float32), mul.output[0]))
        dropped_outputs |= {cast.output[0], mul.output[0]}
        dropped_tensors |= {cast.input[0], scales[0]}
    kept_nodes = [node for node in graph.node if node.output[0] not in dropped_outputs]
    kept_tensors = [tensor for tensor in graph.initializer if tensor.name not in dropped_tensors]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    del graph.initializer[:]
    graph.initializer.extend([*kept_tensors, *folded])


def _drop_softmax_nan_guards(model: onnx.ModelProto) -> None:
    """Remove the `Where(IsNaN(p), 0, p)` after each attention Softmax, which changes no output here.

    PyTorch's export adds it for a row whose keys are all masked, which softmax turns into NaN; a text always has
    its [CLS] token unmasked, so no row ever is. The guard cost two passes over every attention matrix: a sixth of
    the run time once the MatMuls are on integers.
    """
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    consumers: defaultdict[str, int] = defaultdict(int)
    for node in graph.node:
        for name in node.input:
            consumers[name] += 1
    graph_outputs = {output.name for output in graph.output}
    replaced: dict[str, str] = {}  # the guard's output -> the Softmax output it passed on
    dropped: set[str] = set()
    for where in graph.node:
        if where.op_type != "Where" or len(where.input) != 3 or where.output[0] in graph_outputs:
            continue
        isnan, probabilities = producers.get(where.input[0]), producers.get(where.input[2])
        if (
            isnan is not None
            and isnan.op_type == "IsNaN"
            and isnan.input[0] == where.input[2]
            and consumers[isnan.output[0]] == 1
            and probabilities is not None
            and probabilities.op_type == "Softmax"
        ):
            replaced[where.output[0]] = where.input[2]
            dropped |= {where.output[0], isnan.output[0]}
    kept_nodes = [node for node in graph.node if node.output[0] not in dropped]
    for node in kept_nodes:
        for index, name in enumerate(node.input):
            if name in replaced:
                node.input[index] = replaced[name]
    del graph.node[:]
    graph.node.extend(kept_nodes)


class _DropQuantizerRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return f"{os.sep}onnxruntime{os.sep}quantization{os.sep}" not in record.pathname


@contextmanager
def _quantizer_logs_dropped() -> Iterator[None]:
    """onnxruntime's quantizer logs a line per tensor, and advice that does not apply here, to the root logger."""
    records = _DropQuantizerRecords()
    root = logging.getLogger()
    root.addFilter(records)
    try:
        yield
    finally:
        root.removeFilter(records)
