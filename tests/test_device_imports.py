"""The device side stays light: no training frameworks ever, inference backends only when a model opens.

Checked in fresh interpreters, because this pytest process has long imported torch and TensorFlow.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import shared_path

pytestmark = pytest.mark.device

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"
TRAINING = ("torch", "tensorflow", "tf_keras", "keras", "jax", "h5py", "onnx")
BACKENDS = ("onnxruntime", "openvino", "ai_edge_litert", "tflite_runtime")


def _fresh(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_loads_no_backend():
    result = _fresh(
        f"""
        import json, sys
        import gfn_edge
        first = sorted(m for m in {BACKENDS + TRAINING!r} if m in sys.modules)
        import gfn_edge.detector, gfn_edge.embedder, gfn_edge.analyzer, gfn_edge.quality, gfn_edge.cli
        from gfn_edge import Detector, Embedder, FaceAnalyzer, Face, QualityGates
        second = sorted(m for m in {BACKENDS + TRAINING!r} if m in sys.modules)
        print(json.dumps({{"first": first, "second": second}}))
        """
    )
    assert result == {"first": [], "second": []}


def test_pipeline_on_every_backend_without_training_frameworks(bundles):
    image = shared_path("faces", "scenes", "insightface_t1.jpg")
    pairs = {t: (str(bundles.get(DET, t)), str(bundles.get(REC, t))) for t in ("onnx", "openvino", "tflite")}
    result = _fresh(
        f"""
        import json, sys
        import gfn_edge
        from gfn_edge.image import read_image
        image = read_image({str(image)!r})
        found, backends = {{}}, {{}}
        for target, (det, rec) in {pairs!r}.items():
            analyzer = gfn_edge.FaceAnalyzer(det, rec)
            faces = analyzer.analyze(image)
            found[target] = [len(faces), len(faces[0].embedding)]
            backends[target] = analyzer.detector.model.backend
        loaded = sorted(m for m in {TRAINING!r} if m in sys.modules)
        print(json.dumps({{"found": found, "backends": backends, "loaded": loaded}}))
        """
    )
    assert result["found"] == {"onnx": [6, 512], "openvino": [6, 512], "tflite": [6, 512]}
    assert result["backends"] == {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "tflite"}
    assert result["loaded"] == [], f"the device pipeline imported {result['loaded']}"


@pytest.mark.parametrize("target,backend", [("onnx", "onnxruntime"), ("openvino", "openvino"), ("tflite", "tflite")])
def test_one_backend_loads_only_itself(bundles, target, backend):
    det = str(bundles.get(DET, target))
    result = _fresh(
        f"""
        import json, sys
        from gfn_edge import Detector
        import numpy as np
        Detector({det!r}).detect(np.zeros((48, 64, 3), np.uint8))
        print(json.dumps(sorted(m for m in {BACKENDS!r} if m in sys.modules)))
        """
    )
    expected = {"onnxruntime": ["onnxruntime"], "openvino": ["openvino"], "tflite": ["ai_edge_litert"]}[backend]
    assert result == expected
