"""One model, every backend: the same numbers within the export's FP32 (and FP16) tolerances.

Reference side is onnxruntime running the ONNX artifact; the others are OpenVINO running that same
ONNX file, the OpenVINO IR and the TFLite flatbuffer, all converted from the same checkpoint.
Tolerances are the ones gfn-export verifies against (export/verify.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path

from gfn_edge.align import align_batch
from gfn_edge.detector import Detector
from gfn_edge.embedder import Embedder
from gfn_edge.image import list_images, read_image
from gfn_edge.metrics import DetectionAgreement
from gfn_edge.retinaface_decode import Detections, postprocess

pytestmark = pytest.mark.device

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"
BASE = ("onnx", "onnxruntime")
OTHERS = [("onnx", "openvino"), ("openvino", "openvino"), ("tflite", "tflite"), ("openvino-fp16", "openvino"), ("tflite-fp16", "tflite")]
IDS = [f"{t}@{b}" for t, b in OTHERS]
# precision -> tolerances (export/verify.py DEFAULT_TOLERANCES)
DETECT_TOL = {
    "fp32": {"output_rel_err": 1e-3, "recall": 1.0, "precision": 1.0, "box_err_px": 0.5, "landmark_err_px": 0.5},
    "fp16": {"output_rel_err": 0.03, "recall": 0.995, "precision": 0.995, "box_err_px": None, "landmark_err_px": None},
}
COS_MIN = {"fp32": 0.9999, "fp16": 0.999}
SCORE, MARGIN = 0.5, 0.05  # faces above SCORE must match candidates above SCORE - MARGIN


@pytest.fixture(scope="module")
def scene_inputs(bundles):
    """The 25 crowd and group scenes, letterboxed once as the device does (hundreds of faces)."""
    det = Detector(bundles.get(DET, "onnx"))
    pictures = [read_image(p) for p in list_images(shared_path("faces", "scenes"))]
    assert len(pictures) >= 20
    return [det.tensor(p) for p in pictures]


def _run_all(det: Detector, inputs) -> tuple[list[dict[str, np.ndarray]], list[Detections]]:
    outs, dets = [], []
    for x, box in inputs:
        out = det.model.run(x)
        outs.append(out)
        dets.append(postprocess(out["loc"], out["conf"], out["landms"], det.anchors, (box.width, box.height), box.scale, SCORE - MARGIN, 0.4))
    return outs, dets


@pytest.fixture(scope="module")
def base_detections(bundles, scene_inputs):
    return _run_all(Detector(bundles.get(DET, BASE[0]), backend=BASE[1]), scene_inputs)


@pytest.mark.numerics
@pytest.mark.parametrize("target,backend", OTHERS, ids=IDS)
def test_detector_outputs_agree(bundles, scene_inputs, base_detections, target, backend):
    det = Detector(bundles.get(DET, target), backend=backend)
    assert det.model.backend == backend
    tol = DETECT_TOL[det.manifest.precision]
    outs, dets = _run_all(det, scene_inputs)
    base_outs, base_dets = base_detections
    for name in ("loc", "conf", "landms"):
        rel = max(float(np.linalg.norm(o[name] - b[name]) / np.linalg.norm(b[name])) for o, b in zip(outs, base_outs))
        assert rel <= tol["output_rel_err"], f"{name}: relative L2 error {rel:.2e}"
    agreement = DetectionAgreement()
    for ref, other in zip(base_dets, dets):
        agreement.add(ref, other, SCORE, MARGIN)
    m = agreement.metrics()
    assert m["faces_reference"] > 300, "the scenes should hold hundreds of faces"
    assert m["recall"] >= tol["recall"] and m["precision"] >= tol["precision"], m
    for key in ("box_err_px", "landmark_err_px"):
        if tol[key] is not None:
            assert m[key] <= tol[key], f"{key} {m[key]:.3f} px"


@pytest.fixture(scope="module")
def aligned_faces(bundles) -> np.ndarray:
    """Real aligned faces: the largest face of every portrait, and the six of insightface_t1."""
    det = Detector(bundles.get(DET, "onnx"))
    crops = []
    for path in list_images(shared_path("faces", "portraits")) + [shared_path("faces", "scenes", "insightface_t1.jpg")]:
        image = read_image(path)
        dets = det.detect(image, max_faces=None if path.name == "insightface_t1.jpg" else 1, min_face_size=32)
        if len(dets):
            crops.append(align_batch(image, dets.landmarks))
    faces = np.concatenate(crops)
    assert len(faces) >= 30
    return faces


@pytest.fixture(scope="module")
def base_embeddings(bundles, aligned_faces) -> np.ndarray:
    return Embedder(bundles.get(REC, BASE[0]), backend=BASE[1]).embed(aligned_faces)


@pytest.mark.numerics
@pytest.mark.parametrize("target,backend", OTHERS, ids=IDS)
def test_recogniser_embeddings_agree(bundles, aligned_faces, base_embeddings, target, backend):
    emb = Embedder(bundles.get(REC, target), backend=backend)
    assert emb.model.backend == backend
    ours = emb.embed(aligned_faces)
    cos = np.sum(ours * base_embeddings, axis=1)
    limit = COS_MIN[emb.manifest.precision]
    assert cos.min() >= limit, f"worst face cos {cos.min():.6f} < {limit} ({int((cos < limit).sum())} of {len(cos)})"
    # batch size does not change the numbers (fixed-batch artifacts are fed one by one)
    one_by_one = np.concatenate([emb.embed(aligned_faces[i : i + 1]) for i in range(0, len(aligned_faces), 7)])
    np.testing.assert_allclose(one_by_one, ours[::7], atol=2e-5)


def test_embeddings_of_different_people_are_different(base_embeddings):
    """Guards the test above: a model that printed a constant would pass it."""
    sims = base_embeddings @ base_embeddings.T
    off = sims[~np.eye(len(sims), dtype=bool)]
    assert np.median(off) < 0.8 and off.min() < 0.5
