"""Put the manifest inside an artifact, and read it back.

* ONNX: ``metadata_props`` entry ``cskd.manifest``.
* TFLite: a flatbuffer ``Metadata`` entry named ``cskd.manifest`` pointing at a buffer holding the JSON (what
  :func:`cskd_runtime.backends.tflite.read_tflite_metadata` reads).
* CoreML: ``user_defined_metadata["cskd.manifest"]``.

With the manifest inside, the file alone is enough to score photos: nothing sits beside it that could get lost or
mismatched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cskd_runtime.manifest import METADATA_KEY, Manifest

__all__ = ["embed_onnx", "embed_tflite", "embed_coreml", "read_manifest", "embed_manifest"]


def embed_onnx(proto: Any, manifest: Manifest) -> Any:
    """Set (replace) the manifest entry of an ``onnx.ModelProto`` in place and return it."""
    keep = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    for p in keep:
        proto.metadata_props.add(key=p.key, value=p.value)
    proto.metadata_props.add(key=METADATA_KEY, value=manifest.to_json())
    return proto


def embed_tflite(model_bytes: bytes, manifest: Manifest) -> bytes:
    """A copy of a .tflite flatbuffer with the manifest as metadata entry ``cskd.manifest`` (replacing any).

    Uses the object API of the LiteRT schema shipped with ai-edge-litert, so the result is a regular flatbuffer
    that every TFLite/LiteRT interpreter loads.
    """
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_bytes, 0))
    for b in model.buffers or []:
        # Some writers (ai-edge-quantizer) append tensor data after the flatbuffer and point at it by absolute
        # offset; the object API would drop that tail, so such buffers are moved inside (models here are < 2 GB).
        if (b.offset or 0) > 1:
            b.data = np.frombuffer(model_bytes, dtype=np.uint8, count=b.size, offset=b.offset)
            b.offset, b.size = 0, 0
    buf = schema.BufferT()
    buf.data = np.frombuffer(manifest.to_json().encode("utf-8"), dtype=np.uint8)
    model.buffers = list(model.buffers or []) + [buf]
    entries = [m for m in (model.metadata or []) if _name(m.name) != METADATA_KEY]
    meta = schema.MetadataT()
    meta.name = METADATA_KEY
    meta.buffer = len(model.buffers) - 1
    model.metadata = entries + [meta]
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v or "")


def embed_coreml(mlmodel: Any, manifest: Manifest) -> Any:
    """Set the manifest in a ``coremltools.models.MLModel``'s user-defined metadata (before ``save``)."""
    mlmodel.user_defined_metadata[METADATA_KEY] = manifest.to_json()
    return mlmodel


def read_manifest(path: str | os.PathLike) -> Manifest:
    """The manifest embedded in an ONNX, TFLite or CoreML (``.mlpackage``) artifact.

    Raises:
        ValueError: naming the file if it carries no manifest.
        cskd_runtime.ManifestError: if the embedded manifest is invalid.
    """
    p = Path(path)
    text: str | bytes | None
    if p.is_dir():
        import coremltools as ct

        spec = ct.utils.load_spec(str(p))
        text = dict(spec.description.metadata.userDefined).get(METADATA_KEY)
    else:
        from cskd_runtime.backends import detect_format

        if detect_format(p) == "onnx":
            import onnx

            proto = onnx.load(str(p), load_external_data=False)
            text = next((m.value for m in proto.metadata_props if m.key == METADATA_KEY), None)
        else:
            from cskd_runtime.backends.tflite import read_tflite_metadata

            text = read_tflite_metadata(p)
    if text is None:
        raise ValueError(f"{p}: no embedded cskd manifest (key {METADATA_KEY!r})")
    return Manifest.from_json(text, source=str(p))


def embed_manifest(path: str | os.PathLike, manifest: Manifest) -> Path:
    """Embed (replace) the manifest in an existing ONNX or TFLite file, atomically (temp file + rename)."""
    p = Path(path)
    from cskd_runtime.backends import detect_format

    tmp = p.with_name(f".{p.name}.embed.tmp")
    try:
        if detect_format(p) == "onnx":
            import onnx

            proto = embed_onnx(onnx.load(str(p)), manifest)
            onnx.save(proto, str(tmp))
        else:
            tmp.write_bytes(embed_tflite(p.read_bytes(), manifest))
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p
