"""A small binary glTF 2.0 writer for building meshes with 3D Tiles 1.1 feature metadata.

One mesh, one primitive: POSITION, NORMAL, _FEATURE_ID_0 (EXT_mesh_features) and uint32
or uint16 indices; a property table (EXT_structural_metadata) with one row per feature.
Hand-written rather than pygltflib: the layout rules that matter here (8-byte aligned
metadata buffer views, string offsets, accessor min/max) are a page of numpy, and the
builder writes thousands of tiles.
"""

from __future__ import annotations

import json
import struct

import numpy as np

ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
FLOAT, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5123, 5125

# metadata component types → numpy dtypes
NUMPY = {"INT32": np.int32, "UINT32": np.uint32, "FLOAT32": np.float32, "FLOAT64": np.float64}


class _Buffer:
    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []

    def add(self, data: bytes, target: int | None = None) -> int:
        pad = (-self.size) % 8  # 8: what EXT_structural_metadata asks; covers glTF's 4
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        view = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target:
            view["target"] = target
        self.parts.append(data)
        self.size += len(data)
        self.views.append(view)
        return len(self.views) - 1


def building_glb(positions: np.ndarray, normals: np.ndarray, feature_ids: np.ndarray,
                 indices: np.ndarray, translation: tuple[float, float, float],
                 schema: dict, class_name: str, table: dict[str, np.ndarray | list[str]],
                 color: tuple[float, float, float, float] = (0.82, 0.80, 0.76, 1.0)) -> bytes:
    """positions/normals float32 (n, 3) in glTF's y-up frame relative to `translation`;
    feature_ids (n,) into the property table; `table` maps property → values (numbers as
    numpy arrays of the schema's component type, strings as a list of str)."""
    buf = _Buffer()
    n = len(positions)
    count = len(next(iter(table.values())))
    # glTF wants every vertex attribute element 4-byte aligned: float ids (exact to 2^24)
    fid_type = FLOAT
    fid_array = feature_ids.astype(np.float32)
    idx_type = UNSIGNED_SHORT if n <= 65535 else UNSIGNED_INT
    idx_array = indices.astype(np.uint16 if idx_type == UNSIGNED_SHORT else np.uint32).ravel()

    pos_view = buf.add(positions.astype(np.float32).tobytes(), ARRAY_BUFFER)
    nor_view = buf.add(normals.astype(np.float32).tobytes(), ARRAY_BUFFER)
    fid_view = buf.add(fid_array.tobytes(), ARRAY_BUFFER)
    idx_view = buf.add(idx_array.tobytes(), ELEMENT_ARRAY_BUFFER)
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    accessors = [
        {"bufferView": pos_view, "componentType": FLOAT, "count": n, "type": "VEC3",
         "min": [float(v) for v in lo], "max": [float(v) for v in hi]},
        {"bufferView": nor_view, "componentType": FLOAT, "count": n, "type": "VEC3"},
        {"bufferView": fid_view, "componentType": fid_type, "count": n, "type": "SCALAR"},
        {"bufferView": idx_view, "componentType": idx_type, "count": len(idx_array),
         "type": "SCALAR"},
    ]

    props = {}
    klass = schema["classes"][class_name]["properties"]
    for name, values in table.items():
        spec = klass[name]
        if spec["type"] == "STRING":
            encoded = [v.encode() for v in values]
            offsets = np.zeros(len(encoded) + 1, dtype=np.uint32)
            offsets[1:] = np.cumsum([len(b) for b in encoded])
            props[name] = {"values": buf.add(b"".join(encoded)),
                           "stringOffsets": buf.add(offsets.tobytes()),
                           "stringOffsetType": "UINT32"}
        else:
            arr = np.asarray(values, dtype=NUMPY[spec["componentType"]])
            props[name] = {"values": buf.add(arr.tobytes())}

    body = b"".join(buf.parts)
    body += b"\0" * ((-len(body)) % 4)
    gltf = {
        "asset": {"version": "2.0", "generator": "gisplatform models3d"},
        "extensionsUsed": ["EXT_mesh_features", "EXT_structural_metadata"],
        "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "translation": [float(v) for v in translation]}],
        "meshes": [{"primitives": [{
            "attributes": {"POSITION": 0, "NORMAL": 1, "_FEATURE_ID_0": 2},
            "indices": 3, "material": 0, "mode": 4,
            "extensions": {"EXT_mesh_features": {"featureIds": [
                {"featureCount": count, "attribute": 0, "propertyTable": 0}]}}}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": list(color),
                                                "metallicFactor": 0.0, "roughnessFactor": 1.0}}],
        "accessors": accessors,
        "bufferViews": buf.views,
        "buffers": [{"byteLength": len(body)}],
        "extensions": {"EXT_structural_metadata": {
            "schema": schema,
            "propertyTables": [{"class": class_name, "count": count, "properties": props}]}},
    }
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * ((-len(js)) % 4)
    total = 12 + 8 + len(js) + 8 + len(body)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total),
                     struct.pack("<I4s", len(js), b"JSON"), js,
                     struct.pack("<I4s", len(body), b"BIN\0"), body])
