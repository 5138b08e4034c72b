"""Cheap face-quality numbers and gates: size, sharpness and pose from what the pipeline already has.

Nothing here runs a model. Size comes from the box, sharpness from the aligned crop, pose from
the five landmarks, so the checks cost microseconds and can run on every frame. The pose numbers
are proxies, not calibrated angles (five 2-D points cannot give true head pose), but they grow
monotonically with yaw and pitch, which is all a gate needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .registry import ARCFACE_112_TEMPLATE

# Where the aligned crop's face interior lies (fractions of the crop): the Laplacian is taken there
# so the black border warpAffine adds around faces at the picture edge does not count as detail.
_BLUR_WINDOW = (0.2, 0.9, 0.15, 0.85)  # top, bottom, left, right


@dataclass(frozen=True)
class Quality:
    """Quality numbers of one face.

    - ``face_size``: shorter side of the detection box, picture pixels.
    - ``blur``: variance of the Laplacian of the grayscale aligned crop's interior; higher is sharper.
    - ``yaw``: horizontal offset of the nose tip from the eye-mouth midline, in inter-ocular
      distances (0 frontal; positive when the nose points to the picture's right). For an average
      face (nose tip ~0.45 inter-ocular distances in front of the eyes) it is about 0.5*tan(yaw):
      0.09 at 10 degrees, 0.29 at 30, 0.5 at 45; profiles go far beyond.
    - ``pitch``: vertical position of the nose tip between the eye line (0) and the mouth line (1),
      minus its position on the ArcFace template (0.495); positive when the nose is low (head down).
      About 0.0085 per degree near frontal; real frontal photos sit around +0.05.
    - ``roll``: angle of the eye line, degrees (positive: the right-hand eye is lower in the picture).
    """

    face_size: float
    blur: float
    yaw: float
    pitch: float
    roll: float

    def to_dict(self) -> dict[str, float]:
        return {k: (round(float(v), 4) if math.isfinite(v) else None) for k, v in asdict(self).items()}  # type: ignore[misc]


def _pose_frame(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Points in a frame with the eye midpoint at 0 and the eye line horizontal; plus iod and roll."""
    left_eye, right_eye = points[0], points[1]
    d = right_eye - left_eye
    iod = float(np.hypot(d[0], d[1]))
    roll = math.degrees(math.atan2(d[1], d[0]))
    if iod < 1e-6:
        return np.full_like(points, np.nan), 0.0, roll
    u = d / iod
    v = np.asarray([-u[1], u[0]])
    rel = points - (left_eye + right_eye) / 2
    return np.stack([rel @ u, rel @ v], axis=1), iod, roll


def _nose_position(points: np.ndarray) -> tuple[float, float, float]:
    """(yaw proxy, nose height fraction, roll degrees) of (5, 2) landmarks."""
    frame, iod, roll = _pose_frame(np.asarray(points, np.float64).reshape(5, 2))
    mouth = (frame[3] + frame[4]) / 2
    nose = frame[2]
    if iod < 1e-6 or not np.isfinite(mouth).all() or mouth[1] <= 1e-6:
        return math.nan, math.nan, roll
    midline_x = mouth[0] * nose[1] / mouth[1]  # the eye-mouth midline at the nose's height
    return float((nose[0] - midline_x) / iod), float(nose[1] / mouth[1]), roll


_TEMPLATE_NOSE_HEIGHT = _nose_position(np.asarray(ARCFACE_112_TEMPLATE))[1]


def pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) proxies of one face's (5, 2) landmarks; see :class:`Quality`."""
    yaw, height, roll = _nose_position(landmarks)
    return yaw, height - _TEMPLATE_NOSE_HEIGHT, roll


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of an aligned crop's interior (grayscale)."""
    crop = np.asarray(crop)
    if crop.size == 0:
        return 0.0
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    h, w = gray.shape[:2]
    t, b, l, r = _BLUR_WINDOW
    inner = gray[int(h * t) : int(h * b), int(w * l) : int(w * r)]
    return float(cv2.Laplacian(inner, cv2.CV_64F).var())


def assess(box: np.ndarray, landmarks: np.ndarray, crop: np.ndarray | None) -> Quality:
    """Quality of one detected face; ``crop`` is its aligned crop (blur is NaN without one)."""
    box = np.asarray(box, np.float64).ravel()
    size = float(min(box[2] - box[0], box[3] - box[1]))
    yaw, pitch, roll = pose(landmarks)
    blur = sharpness(crop) if crop is not None else math.nan
    return Quality(face_size=size, blur=blur, yaw=yaw, pitch=pitch, roll=roll)


@dataclass
class QualityGates:
    """Thresholds a face must meet to be worth recognising; ``None`` turns a gate off.

    Defaults, and why:

    - ``min_face_size=40`` px: the recogniser sees 112x112 crops; below ~40 px a crop is upscaled
      almost 3x and holds too little detail, and RetinaFace's landmarks (hence alignment) get
      unreliable on its smallest anchors (16-32 px).
    - ``min_blur=30``: variance of the Laplacian on the aligned crop's interior. On the shared
      photos sharp faces of 40 px and more score 36-5000 (5th percentile 53 in crowd scenes, 130
      in portraits); a Gaussian blur of sigma 2 px at crop scale (an out-of-focus or
      motion-smeared face) brings the median to 17 and three quarters under 25.
    - ``max_yaw=0.4``: about 38 degrees of head turn; beyond that one eye is foreshortened and
      2-D alignment cannot make the crop look frontal, so similarity drops for everyone. 95% of
      the shared portrait faces are within 0.32.
    - ``max_pitch=0.3``: roughly 35 degrees up or down; 95% of the shared portrait faces are
      within 0.24 (frontal photos sit near +0.05, not 0).
    - ``max_roll=45`` degrees: alignment removes in-plane rotation exactly, so roll itself costs
      little; past ~45 degrees the detector (trained on upright faces) places landmarks poorly.
    """

    min_face_size: float | None = 40.0
    min_blur: float | None = 30.0
    max_yaw: float | None = 0.4
    max_pitch: float | None = 0.3
    max_roll: float | None = 45.0

    def check(self, quality: Quality) -> list[str]:
        """Names of the failed gates ("face_size", "blur", "yaw", "pitch", "roll"); empty when all pass.

        A number that could not be measured (NaN: no crop, degenerate landmarks) fails its gate.
        """
        failed = []

        def low(value: float, limit: float | None) -> bool:
            return limit is not None and not (math.isfinite(value) and value >= limit)

        def high(value: float, limit: float | None) -> bool:
            return limit is not None and not (math.isfinite(value) and abs(value) <= limit)

        if low(quality.face_size, self.min_face_size):
            failed.append("face_size")
        if low(quality.blur, self.min_blur):
            failed.append("blur")
        if high(quality.yaw, self.max_yaw):
            failed.append("yaw")
        if high(quality.pitch, self.max_pitch):
            failed.append("pitch")
        if high(quality.roll, self.max_roll):
            failed.append("roll")
        return failed

    @classmethod
    def off(cls) -> QualityGates:
        """Gates that pass every face."""
        return cls(None, None, None, None, None)
