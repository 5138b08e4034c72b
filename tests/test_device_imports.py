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


def test_reading_and_opening_a_bundle_loads_no_training_side_module(bundles):
    """The bundle contract (manifest, schema, typed spec) is device code: no gfn_edge.export, calib or hub."""
    det = str(bundles.get(DET, "onnx"))
    result = _fresh(
        f"""
        import json, sys
        import gfn_edge
        from gfn_edge.manifest import read_manifest
        from gfn_edge.runtimes import open_model
        manifest = read_manifest({det!r})
        spec = manifest.model_spec
        open_model({det!r}).run(__import__("numpy").zeros((1, 480, 640, 3), "float32"))
        loaded = sorted(m for m in sys.modules if m.startswith(("gfn_edge.export", "gfn_edge.calib", "gfn_edge.hub")))
        loaded += sorted(m for m in {TRAINING!r} if m in sys.modules)
        print(json.dumps({{"task": spec.task, "anchors": spec.anchors is not None, "loaded": loaded}}))
        """
    )
    assert result == {"task": "detect", "anchors": True, "loaded": []}


def test_benchmark_engine_measures_without_onnx_or_training_frameworks(bundles, tmp_path):
    """The engine behind gfn-bench, bench_device and benchmarks/run.py runs on a board: it imports no
    onnx or training framework, and reads the FLOPs gfn-export recorded instead of counting them."""
    det, rec = str(bundles.get(DET, "onnx")), str(bundles.get(REC, "onnx"))
    image = str(shared_path("faces", "pairs", "deepface_img20.jpg"))
    result = _fresh(
        f"""
        import json, sys
        import gfn_edge.benchmark, gfn_edge.benchmark.engine as engine
        import gfn_edge.benchmark.cli, gfn_edge.benchmark.device, gfn_edge.benchmark.suite, gfn_edge.benchmark.pipeline
        import gfn_edge.benchmark.peers, gfn_edge.benchmark.models, gfn_edge.benchmark.stages, gfn_edge.benchmark.probe
        imported = sorted(m for m in {BACKENDS + TRAINING!r} if m in sys.modules)
        res = engine.run_device_benchmark({det!r}, {rec!r}, image={image!r}, threads=1, runs=2, warmup=1, gallery_size=200,
                                          work={str(tmp_path)!r})
        loaded = sorted(m for m in {TRAINING!r} + ("gfn_edge.export", "gfn_edge.calib") if m in sys.modules)
        print(json.dumps({{"imported": imported, "loaded": loaded, "faces": res["faces"], "fps": res["fps"],
                          "flops": res["models"]["detector"]["complexity"]}}))
        """
    )
    assert result["imported"] == [], f"importing the benchmark engine loaded {result['imported']}"
    assert result["loaded"] == [], f"running the benchmark engine imported {result['loaded']}"
    assert result["faces"] == 1 and result["fps"] > 0
    assert result["flops"]["macs"] > 500e6  # RetinaFace at 640x480, as recorded at export
