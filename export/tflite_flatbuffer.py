"""A .tflite flatbuffer as LiteRT's object tree, for the edits the converters cannot make.

Two writers rewrite a converted model: the manifest embedded as metadata (:mod:`.targets.tflite_fp`)
and the smaller storage of an INT8 model's float weights (:mod:`.int8.tflite_float_weights`). Both
need the same two steps done the same way: converters may keep large constants after the
flatbuffer (a buffer's offset and size instead of its data), which packing the tree again would
drop, so they are read into the tree first; and the packed file needs TFLite's identifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FILE_IDENTIFIER = b"TFL3"


def unpack(data: bytes) -> Any:
    """``data``'s ``schema.ModelT``, every buffer stored after the flatbuffer read into the tree."""
    from ai_edge_litert import schema_py_generated as schema

    raw = bytearray(data)
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(raw, 0))
    for buf in model.buffers or []:
        if getattr(buf, "offset", 0) and getattr(buf, "size", 0):
            buf.data = np.frombuffer(bytes(raw[buf.offset : buf.offset + buf.size]), dtype=np.uint8)
            buf.offset = buf.size = 0
    return model


def pack(model: Any, size_hint: int = 0) -> bytes:
    """The flatbuffer of ``model`` (a ``schema.ModelT``); ``size_hint``: about how many bytes it takes."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())
