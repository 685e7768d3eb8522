"""Synthetic street scenes: configuration, 3-D layout, trajectories and per-time geometry.

A scene is a straight street seen from a kerbside camera. Everything is placed in a world frame
in metres and projected with a pinhole camera; the renderer (:mod:`.synth_render`), the sound
synthesis (:mod:`.synth_audio`) and the annotations (:mod:`.synth`) all read the same geometry,
so boxes, pixels and sound agree by construction.

Conventions
-----------
World frame (metres): ``X`` along the street (traffic in lanes moves along +X or -X), ``Y`` up
(ground at ``Y = 0``), ``Z`` away from the camera, perpendicular to the street. The camera stands
at ``(0, height, 0)`` looking horizontally, turned by ``yaw`` radians about ``Y`` (yaw > 0 looks
towards +X, so the street recedes towards a vanishing point on one side of the image).

Image coordinates are given in the 1280x720 Urbansas annotation frame
(:data:`vssl_core.data.urbansas.URBANSAS_FRAME`): ``u`` right, ``v`` down, pixels of that frame;
the renderer scales them to the actual ``(width, height)``. A camera shake is a per-frame image
translation, also in annotation pixels.

Camera calibration (module constants ``_YAW_DEG``, ``_FOCAL``, ``_HORIZON``, ``_CAM_HEIGHT``,
``_KERB_NEAR``): a camera 1.6-3.5 m up, 5.5-12 m from the near kerb, looking 20-45 deg off the
street normal with a 0.55-0.72 x 1280 px focal length, so most of the road lies at mid-depth and
vehicles shrink towards the vanishing point. Chosen so that the sounding-vehicle boxes match
Urbansas-mini (median width / height / area ~120 x 70 px / 0.9% of the frame vs 129 x 76 / 1.0%,
10th-90th percentile area ~0.1-7%; see ``tests/test_synth.py``).

Street cross-section (increasing ``Z``): near sidewalk (camera, pedestrians), near kerb, near
parking lane, one or two traffic lanes per direction, far parking lane, far kerb, far sidewalk
(pedestrians, street lamps, trees) and building facades.

Object states: ``moving`` (drives along a lane, sounds), ``idling`` (stands in a traffic lane,
engine on, sounds; a *stop-and-go* idling vehicle also drives in and stops, or waits and pulls away:
``Thing.move_from`` / ``move_until``), ``parked`` (parking lane, silent), ``pedestrian`` (walks on a sidewalk,
quiet footsteps), ``tree`` (sways, silent), ``offscreen`` (drives on a street behind the camera:
heard, never seen).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from vssl_core.errors import data_error
from vssl_core.data.urbansas import URBANSAS_FRAME

__all__ = [
    "SceneConfig", "Camera", "Street", "Thing", "Scene", "sample_scene", "VEHICLE_CLASSES",
    "CLASS_IDS", "OFFSCREEN_CLASS_ID", "ANNOTATION_FPS", "AUDIBLE_RADIUS", "DEPTH_FAR",
    "annotation_times", "box_at", "face_quad", "face_z", "inframe_fraction", "visible_fractions",
    "silhouette_boxes", "SILHOUETTE_PARTS",
    "shake_offsets", "audible_interval",
]

ANN_W, ANN_H = URBANSAS_FRAME
VEHICLE_CLASSES = ("car", "bus", "motorbike", "truck")
CLASS_IDS = {"car": 0, "bus": 1, "motorbike": 2, "truck": 3}
OFFSCREEN_CLASS_ID = 4
ANNOTATION_FPS = 2.0
AUDIBLE_RADIUS = 30.0   # m: a moving vehicle is heard (and annotated) within this distance
DEPTH_FAR = 50.0        # m: distance mapped to depth 1.0 in objects.csv
LANE_WIDTH = 3.2
PARKING_WIDTH = 2.2

# length range, height range, width (m); motorbike height includes its rider
_DIMS = {
    "car": ((3.9, 4.8), (1.40, 1.65), 1.8),
    "bus": ((10.5, 12.0), (2.9, 3.2), 2.5),
    "truck": ((6.5, 8.5), (2.8, 3.5), 2.4),
    "motorbike": ((1.9, 2.2), (1.5, 1.7), 0.8),
}
# camera: yaw from the street normal (deg), focal length (x ANN_W), horizon row (x ANN_H),
# height (m); distance from the camera to the near kerb (m)
_YAW_DEG = (20.0, 45.0)
_FOCAL = (0.55, 0.72)
_HORIZON = (0.18, 0.32)
_CAM_HEIGHT = (1.6, 3.5)
_KERB_NEAR = (5.5, 12.0)
_FOLLOW_PROB = 0.5          # probability that a moving vehicle follows an earlier one (platoon)
_HEADWAY_S = (0.5, 1.5)     # time gap of a follower, s
_SPEED = {"car": (7.0, 14.0), "bus": (5.0, 10.0), "truck": (6.0, 11.0), "motorbike": (8.0, 15.0)}
_MOVING_MIX = {"car": 0.74, "bus": 0.10, "motorbike": 0.09, "truck": 0.07}
_PARKED_MIX = {"car": 0.86, "bus": 0.0, "motorbike": 0.06, "truck": 0.08}
_CAR_COLOURS = np.array([
    (235, 235, 235), (30, 30, 35), (150, 152, 158), (120, 20, 25), (25, 50, 110), (200, 200, 205),
    (60, 90, 60), (180, 140, 40), (90, 90, 95), (200, 60, 30), (110, 60, 30), (40, 40, 60),
], dtype=np.uint8)
_BUS_COLOURS = np.array([(200, 30, 35), (30, 80, 170), (235, 190, 30), (230, 230, 230), (40, 140, 70)],
                        dtype=np.uint8)


def _check_range(name: str, value: tuple, low: float, integer: bool = True) -> None:
    ok = (isinstance(value, tuple) and len(value) == 2 and value[0] <= value[1] and value[0] >= low
          and all(isinstance(v, int) if integer else isinstance(v, (int, float)) for v in value))
    if not ok:
        kind = "integers" if integer else "numbers"
        raise data_error(None, name, f"bad range {value!r}",
                         f"give a tuple (min, max) of {kind} with {low} <= min <= max")


def _check_prob(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise data_error(None, name, f"probability {value!r} outside [0, 1]", "give a value in [0, 1]")


@dataclass(frozen=True)
class SceneConfig:
    """What a synthetic clip may contain. Ranges are inclusive ``(min, max)`` tuples.

    Parameters
    ----------
    n_moving : (int, int)
        Vehicles driving through the scene (each sounds and is annotated while visible); some
        follow an earlier one in its lane (platoons, :data:`_FOLLOW_PROB`).
    n_parked : (int, int)
        Parked vehicles, always placed in view and silent. The default (1, 4) puts at least one
        parked car in every clip: a localiser that ignores motion pays for it.
    idling_prob : float
        Probability that the clip holds one vehicle idling in a traffic lane (engine on, no
        motion): rare but present, the case where motion cues fail.
    stopgo_prob : float
        Probability that the clip holds one stop-and-go vehicle (engine on all clip): it drives in
        and stops in its lane, or waits and then pulls away (half each), the case FlowGrad's longer
        flow windows are meant for. 0 by default (the default scenes do not draw it at all).
    n_pedestrians, n_trees : (int, int)
        Walking pedestrians (quiet footsteps) and swaying trees (silent): motion without a
        vehicle sound.
    shake_prob : float
        Probability that the camera shakes in a clip.
    shake_amplitude : float
        Standard deviation of the shake offset, pixels of the 1280x720 annotation frame.
    offscreen_prob : float
        Probability of one vehicle that is heard but never seen (a street behind the camera).
    night_fraction : float
        Probability that a clip is at night (dark scene, lit windows, headlights).
    noise_level_db : float
        RMS level of the background noise in dB full scale (before the anti-clipping scaling).
    footsteps : bool
        Whether pedestrians make (quiet) footstep sounds.
    width, height : int
        Rendered video size in pixels (boxes stay in 1280x720 units).
    fps : int
        Video frame rate; a positive even integer so that the 2-fps annotation times fall on
        frames. 24 like the Urbansas release.
    duration : float
        Clip length in seconds, a positive multiple of 0.5.
    sample_rate : int
        Audio sample rate in Hz (stereo, 16-bit PCM).
    """

    n_moving: tuple[int, int] = (1, 5)
    n_parked: tuple[int, int] = (1, 4)
    idling_prob: float = 0.25
    stopgo_prob: float = 0.0
    n_pedestrians: tuple[int, int] = (0, 3)
    n_trees: tuple[int, int] = (0, 3)
    shake_prob: float = 0.2
    shake_amplitude: float = 12.0
    offscreen_prob: float = 0.3
    night_fraction: float = 0.2
    noise_level_db: float = -42.0
    footsteps: bool = True
    width: int = 320
    height: int = 180
    fps: int = 24
    duration: float = 10.0
    sample_rate: int = 48000

    def __post_init__(self) -> None:
        for name in ("n_moving", "n_parked", "n_pedestrians", "n_trees"):
            _check_range(name, getattr(self, name), 0)
        for name in ("idling_prob", "stopgo_prob", "shake_prob", "offscreen_prob", "night_fraction"):
            _check_prob(name, getattr(self, name))
        if self.shake_amplitude < 0:
            raise data_error(None, "shake_amplitude", f"negative value {self.shake_amplitude}",
                             "give a standard deviation >= 0 in 1280x720 pixels")
        if not (isinstance(self.fps, int) and self.fps > 0 and self.fps % 2 == 0):
            raise data_error(None, "fps", f"{self.fps!r} is not a positive even integer",
                             "use an even frame rate (e.g. 24) so the 2-fps boxes fall on frames")
        if self.duration <= 0 or abs(self.duration * 2 - round(self.duration * 2)) > 1e-9:
            raise data_error(None, "duration", f"{self.duration!r} is not a positive multiple of 0.5",
                             "use e.g. 10.0 (the Urbansas clip length)")
        if self.width < 16 or self.height < 16:
            raise data_error(None, "width/height", f"{self.width}x{self.height} is too small",
                             "use at least 16x16 pixels (320x180 by default)")
        if self.sample_rate < 8000:
            raise data_error(None, "sample_rate", f"{self.sample_rate} Hz is too low",
                             "use at least 8000 Hz (48000 by default, like Urbansas)")

    @property
    def n_frames(self) -> int:
        return int(round(self.duration * self.fps))


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at ``(0, height, 0)``; focal length and principal point in annotation pixels."""

    f: float
    cx: float
    cy: float
    height: float
    yaw: float

    def project(self, X, Y, Z):
        """World points -> ``(u, v, zc)``; ``zc`` is the depth along the optical axis (m).

        Points with ``zc <= 0`` are behind the camera and their ``u, v`` are meaningless.
        """
        X, Y, Z = (np.asarray(a, dtype=np.float64) for a in (X, Y, Z))
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        xc = X * c - Z * s
        zc = X * s + Z * c
        yc = Y - self.height
        zs = np.where(zc > 1e-6, zc, 1e-6)
        return self.cx + self.f * xc / zs, self.cy - self.f * yc / zs, zc

    def x_at(self, u: float, Z: float) -> float:
        """The street coordinate ``X`` seen at image column ``u`` on the line of depth ``Z``."""
        xc = (u - self.cx) / self.f
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        dx, dz = xc * c + s, -xc * s + c
        return Z * dx / dz

    def rays(self, width: int, height: int):
        """World directions ``(dx, dy, dz)`` of the centres of a ``height x width`` pixel grid."""
        u = (np.arange(width) + 0.5) * (ANN_W / width)
        v = (np.arange(height) + 0.5) * (ANN_H / height)
        uu, vv = np.meshgrid(u, v)
        xc = (uu - self.cx) / self.f
        yc = -(vv - self.cy) / self.f
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return xc * c + s, yc, -xc * s + c


@dataclass(frozen=True)
class Street:
    """Cross-section of the street (all ``Z`` in metres from the camera) and its facades."""

    kerb_near: float
    parking_near: float          # centre of the near parking lane
    lanes: tuple[float, ...]     # centres of the traffic lanes
    lane_dirs: tuple[int, ...]   # +1 / -1 travel direction along X
    parking_far: float
    kerb_far: float
    tree_line: float
    facade: float
    building_edges: tuple[float, ...]      # X boundaries of building segments
    building_heights: tuple[float, ...]
    building_colours: tuple[tuple[int, int, int], ...]
    lamp_xs: tuple[float, ...]
    crossing_x: float | None     # start X of a zebra crossing (4 m wide), or None


@dataclass(frozen=True)
class Thing:
    """One object of the scene. Its street coordinate is ``X(t) = x0 + vx * clip(t, move_from,
    move_until)`` (``vx`` in m/s): it moves between the two times and stands still outside them."""

    track_id: int
    label: str      # car / bus / truck / motorbike / pedestrian / tree
    state: str      # moving / parked / idling / pedestrian / tree / offscreen
    x0: float
    vx: float
    z: float
    length: float   # along X (m); crown diameter for trees
    height: float   # m
    width: float    # along Z (m)
    colour: tuple[int, int, int]
    seed: int       # texture / sound seed of this object
    facing: int = 1  # +1: front towards +X
    phase: float = 0.0   # gait / sway phase (rad)
    rate: float = 0.0    # step rate (Hz) for pedestrians, sway frequency for trees
    move_from: float = -math.inf   # s: stands still before (a stop-and-go vehicle pulling away)
    move_until: float = math.inf   # s: stands still after (a stop-and-go vehicle that stops)

    @property
    def is_vehicle(self) -> bool:
        return self.label in CLASS_IDS

    @property
    def sounding(self) -> bool:
        return self.state in ("moving", "idling", "offscreen")

    def x(self, t):
        return self.x0 + self.vx * np.clip(np.asarray(t, dtype=np.float64), self.move_from, self.move_until)

    def moving_at(self, t) -> np.ndarray:
        """True where the object moves at time ``t`` (s)."""
        t = np.asarray(t, dtype=np.float64)
        return (self.vx != 0) & (t > self.move_from) & (t < self.move_until)


@dataclass(frozen=True)
class Scene:
    """Everything needed to render and sonify one clip."""

    clip: str
    index: int
    night: bool
    camera: Camera
    street: Street
    things: tuple[Thing, ...]
    shake: np.ndarray = field(repr=False)   # (n_frames, 2) offsets (du, dv), annotation pixels
    texture_seed: int = 0
    audio_seed: int = 0


def annotation_times(duration: float) -> np.ndarray:
    """The 2-fps box times ``0.0, 0.5, ...`` (< ``duration``), seconds."""
    return np.arange(int(round(duration * ANNOTATION_FPS))) / ANNOTATION_FPS


def _box_corners(thing: Thing, t):
    """World corners of the visible outline of ``thing`` at times ``t``: arrays (T, 4) X, Y, Z.

    Vehicles: the near side face (a vertical rectangle at ``z - width/2``), which the renderer
    fills with the side silhouette. Pedestrians and trees: a vertical rectangle at ``z``.
    """
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    xc = thing.x(t)[:, None]
    half = thing.length / 2 if thing.label != "pedestrian" else 0.3
    z = face_z(thing)
    dx = np.array([-half, half, half, -half])[None, :]
    y = np.array([0.0, 0.0, thing.height, thing.height])[None, :]
    X = xc + dx
    return X, np.broadcast_to(y, X.shape), np.full(X.shape, z)


def face_z(thing: Thing) -> float:
    """Distance ``Z`` (m) of the drawn outline of ``thing``: the painter's and occlusion order.

    Objects on lines of different ``Z`` never cross, and a camera looking towards +Z sees the
    smaller ``Z`` in front, so sorting by this value orders the drawing correctly.
    """
    return thing.z - thing.width / 2 if thing.is_vehicle else thing.z


def face_quad(camera: Camera, thing: Thing, t) -> tuple[np.ndarray, np.ndarray]:
    """Projected outline corners (rear-bottom, front-bottom, front-top, rear-top) at times ``t``.

    Returns ``(uv, zc)``: ``uv`` (T, 4, 2) in annotation pixels without shake, ``zc`` (T, 4).
    For ``facing == -1`` the first corner is still the one at the smaller ``X``.
    """
    X, Y, Z = _box_corners(thing, t)
    u, v, zc = camera.project(X, Y, Z)
    return np.stack([u, v], axis=-1), zc


def box_at(camera: Camera, thing: Thing, t) -> np.ndarray:
    """Boxes ``[x, y, w, h]`` (T, 4), annotation pixels, without shake; NaN when behind the camera."""
    uv, zc = face_quad(camera, thing, t)
    x0, y0 = uv[..., 0].min(-1), uv[..., 1].min(-1)
    x1, y1 = uv[..., 0].max(-1), uv[..., 1].max(-1)
    box = np.stack([x0, y0, x1 - x0, y1 - y0], axis=-1)
    box[(zc < 0.5).any(-1)] = np.nan
    return box


def inframe_fraction(boxes: np.ndarray) -> np.ndarray:
    """Fraction of each box ``[x, y, w, h]`` (N, 4) inside the 1280x720 frame (0 for NaN boxes)."""
    x, y, w, h = boxes.T
    iw = np.clip(np.minimum(x + w, ANN_W) - np.maximum(x, 0), 0, None)
    ih = np.clip(np.minimum(y + h, ANN_H) - np.maximum(y, 0), 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = iw * ih / (w * h)
    return np.nan_to_num(frac, nan=0.0)


# Opaque parts of the drawn silhouettes (see ``synth_render._vehicle_sprite``) as rectangles in
# face coordinates ``(a0, a1, b0, b1)``: ``a`` from the rear (0) to the front (1) of the object,
# ``b`` from the ground (0) to the top (1) of its outline. Used for occlusion only.
SILHOUETTE_PARTS = {
    "car": ((0.0, 1.0, 0.14, 0.58), (0.27, 0.72, 0.58, 0.93)),
    "bus": ((0.0, 1.0, 0.12, 0.96),),
    "truck": ((0.0, 0.73, 0.2, 1.0), (0.75, 1.0, 0.16, 0.75)),
    "motorbike": ((0.2, 0.85, 0.22, 0.56), (0.42, 0.64, 0.52, 0.95)),
    "pedestrian": ((0.3, 0.7, 0.0, 1.0),),
}


def silhouette_boxes(camera: Camera, thing: Thing, t) -> np.ndarray:
    """Image boxes ``[x, y, w, h]`` (T, P, 4) of the opaque parts of ``thing`` at times ``t``.

    The parts are :data:`SILHOUETTE_PARTS` (rectangles on the drawn outline, mirrored for
    ``facing == -1``), mapped bilinearly onto the projected outline; annotation pixels, no
    shake; NaN when behind the camera. Objects without parts (trees) give ``P = 0``.
    """
    parts = SILHOUETTE_PARTS.get(thing.label, ())
    uv, zc = face_quad(camera, thing, t)            # (T, 4, 2): rb, fb, ft, rt along +X
    out = np.full((uv.shape[0], len(parts), 4), np.nan)
    for k, (a0, a1, b0, b1) in enumerate(parts):
        if thing.facing < 0 and thing.label != "pedestrian":
            a0, a1 = 1.0 - a1, 1.0 - a0
        pts = []
        for a in (a0, a1):
            for b in (b0, b1):
                bottom = uv[:, 0] + a * (uv[:, 1] - uv[:, 0])
                top = uv[:, 3] + a * (uv[:, 2] - uv[:, 3])
                pts.append(bottom + b * (top - bottom))
        pts = np.stack(pts, 1)                       # (T, 4, 2)
        lo, hi = pts.min(1), pts.max(1)
        out[:, k] = np.concatenate([lo, hi - lo], -1)
    out[(zc < 0.5).any(-1)] = np.nan
    return out


def visible_fractions(boxes: np.ndarray, depth: np.ndarray, parts: list[np.ndarray],
                      cell: float = 4.0) -> np.ndarray:
    """Unoccluded share of the in-frame part of each box (the occlusion flag of the annotators).

    Parameters
    ----------
    boxes : (N, 4) float
        ``[x, y, w, h]`` in annotation pixels (NaN: not in front of the camera).
    depth : (N,) float
        Occlusion order of the objects (:func:`face_z`, m); smaller is nearer.
    parts : list of N arrays (P_i, 4)
        Opaque silhouette parts of each object (:func:`silhouette_boxes` at this time, shake
        included); an empty array for objects that hide nothing annotated (trees stand behind
        the road).
    cell : float
        Grid resolution of the occlusion test, annotation pixels.

    Returns
    -------
    (N,) float in [0, 1]: the share of the part of the box inside the 1280x720 frame that no
    nearer object's silhouette covers; 0 when no part of the box is in the frame. A vehicle
    entering the frame is thus fully visible (the real annotations clip boxes to the frame and
    flag occlusion only).
    """
    frac = inframe_fraction(boxes)
    gw, gh = int(ANN_W / cell), int(ANN_H / cell)
    covered = np.zeros((gh, gw), dtype=bool)
    out = np.zeros(len(boxes))

    def cells(b):
        x, y, w, h = b
        c0, c1 = int(np.clip(np.round(x / cell), 0, gw)), int(np.clip(np.round((x + w) / cell), 0, gw))
        r0, r1 = int(np.clip(np.round(y / cell), 0, gh)), int(np.clip(np.round((y + h) / cell), 0, gh))
        return slice(r0, r1), slice(c0, c1)

    for i in np.argsort(depth, kind="stable"):
        if frac[i] > 0:
            region = covered[cells(boxes[i])]
            out[i] = 1.0 - region.mean() if region.size else 1.0
        for b in parts[i]:
            if np.isfinite(b).all():
                covered[cells(b)] = True
    return out


def shake_offsets(rng: np.random.Generator, n_frames: int, fps: int, amplitude: float) -> np.ndarray:
    """Smooth random walk of the image translation (n_frames, 2), annotation pixels.

    White noise low-passed by a Gaussian of ~0.15 s, scaled to standard deviation ``amplitude``
    per axis, plus a slower drift; zero when ``amplitude`` is 0.
    """
    if amplitude <= 0 or n_frames == 0:
        return np.zeros((n_frames, 2))
    pad = 4 * fps
    noise = rng.standard_normal((n_frames + 2 * pad, 2))
    out = np.zeros_like(noise)
    for sigma, weight in ((0.15 * fps, 1.0), (0.8 * fps, 0.7)):
        k = np.exp(-0.5 * (np.arange(-3 * sigma, 3 * sigma + 1) / sigma) ** 2)
        for a in range(2):
            comp = np.convolve(noise[:, a], k / k.sum(), mode="same")
            out[:, a] += weight * comp / (comp.std() + 1e-12)
    out = out[pad:pad + n_frames]
    out -= out.mean(0)
    return out * (amplitude / (out.std(0) + 1e-12))


def _choice(rng: np.random.Generator, mix: dict[str, float]) -> str:
    names = list(mix)
    p = np.array([mix[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _vehicle_dims(rng: np.random.Generator, label: str) -> tuple[float, float, float]:
    (l0, l1), (h0, h1), w = _DIMS[label]
    return float(rng.uniform(l0, l1)), float(rng.uniform(h0, h1)), w


def _colour(rng: np.random.Generator, label: str) -> tuple[int, int, int]:
    table = _BUS_COLOURS if label == "bus" else _CAR_COLOURS
    return tuple(int(c) for c in table[int(rng.integers(len(table)))])


def _sample_street(rng: np.random.Generator) -> tuple[Camera, Street]:
    # a street camera a few metres up on the sidewalk, looking obliquely along the street:
    # most of the road lies at mid-depth (15-40 m), vehicles cross from near to far
    yaw = math.radians(float(rng.uniform(*_YAW_DEG))) * (1 if rng.random() < 0.5 else -1)
    camera = Camera(f=float(rng.uniform(*_FOCAL)) * ANN_W, cx=ANN_W / 2,
                    cy=float(rng.uniform(*_HORIZON)) * ANN_H, height=float(rng.uniform(*_CAM_HEIGHT)),
                    yaw=yaw)
    kerb_near = float(rng.uniform(*_KERB_NEAR))
    n_per_dir = 1 if rng.random() < 0.5 else 2
    parking_near = kerb_near + PARKING_WIDTH / 2
    z = kerb_near + PARKING_WIDTH
    dirs = [1] * n_per_dir + [-1] * n_per_dir
    if rng.random() < 0.5:
        dirs = dirs[::-1]
    lanes = tuple(z + LANE_WIDTH * (k + 0.5) for k in range(2 * n_per_dir))
    z += LANE_WIDTH * 2 * n_per_dir
    parking_far = z + PARKING_WIDTH / 2
    kerb_far = z + PARKING_WIDTH
    facade = kerb_far + float(rng.uniform(3.5, 5.0))
    edges = [-200.0]
    while edges[-1] < 200.0:
        edges.append(edges[-1] + float(rng.uniform(7.0, 22.0)))
    nb = len(edges) - 1
    heights = tuple(float(h) for h in rng.uniform(9.0, 26.0, nb))
    palette = np.array([(196, 170, 140), (170, 150, 130), (210, 200, 180), (150, 110, 90),
                        (185, 185, 180), (120, 110, 105), (215, 190, 150), (160, 170, 175)], float)
    cols = palette[rng.integers(len(palette), size=nb)] * rng.uniform(0.85, 1.1, (nb, 1))
    colours = tuple(tuple(int(c) for c in np.clip(col, 0, 255)) for col in cols)
    lamp_start = float(rng.uniform(0, 25.0))
    lamps = tuple(float(x) for x in np.arange(-150.0 + lamp_start, 150.0, 25.0))
    crossing = None
    if rng.random() < 0.3:
        crossing = camera.x_at(float(rng.uniform(0.1, 0.8)) * ANN_W, lanes[0])
    street = Street(kerb_near=kerb_near, parking_near=parking_near, lanes=lanes,
                    lane_dirs=tuple(dirs), parking_far=parking_far, kerb_far=kerb_far,
                    tree_line=kerb_far + 1.6, facade=facade, building_edges=tuple(edges),
                    building_heights=heights, building_colours=colours, lamp_xs=lamps,
                    crossing_x=crossing)
    return camera, street


def _overlaps(a: Thing, b: Thing, times: np.ndarray, gap: float) -> bool:
    if abs(a.z - b.z) > 0.5:
        return False
    d = np.abs(a.x(times) - b.x(times))
    return bool((d < (a.length + b.length) / 2 + gap).any())


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def sample_scene(config: SceneConfig, rng: np.random.Generator, clip: str, index: int) -> Scene:
    """Draw one scene (layout, objects, trajectories, shake) from ``config`` with ``rng``."""
    camera, street = _sample_street(rng)
    night = bool(rng.random() < config.night_fraction)
    T = config.duration
    times = np.linspace(-8.0, T + 8.0, 200)
    things: list[Thing] = []

    def fits(candidate: Thing, gap: float) -> bool:
        return not any(_overlaps(candidate, o, times, gap) for o in things if o.is_vehicle)

    # idling vehicle first: it blocks its lane for the traffic sampled next
    if rng.random() < config.idling_prob:
        label = _choice(rng, {"car": 0.75, "bus": 0.12, "truck": 0.08, "motorbike": 0.05})
        lane = int(rng.integers(len(street.lanes)))
        L, H, W = _vehicle_dims(rng, label)
        x = camera.x_at(float(rng.uniform(0.2, 0.8)) * ANN_W, street.lanes[lane])
        things.append(Thing(0, label, "idling", x, 0.0, street.lanes[lane], L, H, W,
                            _colour(rng, label), _seed(rng), facing=street.lane_dirs[lane]))
    if config.stopgo_prob > 0 and rng.random() < config.stopgo_prob:
        things.append(_stop_and_go(rng, camera, street, T, [o.z for o in things]))
    blocked = {t.z for t in things}
    free_lanes = [k for k, z in enumerate(street.lanes) if z not in blocked]
    for _ in range(int(rng.integers(config.n_moving[0], config.n_moving[1] + 1))):
        for _attempt in range(30):
            label = _choice(rng, _MOVING_MIX)
            L, H, W = _vehicle_dims(rng, label)
            leaders = [o for o in things if o.state == "moving"]
            if leaders and rng.random() < _FOLLOW_PROB:
                # platoon: follow a vehicle in its lane at its speed, 0.6-1.8 s behind it
                lead = leaders[int(rng.integers(len(leaders)))]
                v, z, d = lead.vx, lead.z, lead.facing
                gap = (lead.length + L) / 2 + float(rng.uniform(*_HEADWAY_S)) * abs(v)
                x0 = lead.x0 - d * gap
            else:
                lane = free_lanes[int(rng.integers(len(free_lanes)))]
                d, z = street.lane_dirs[lane], street.lanes[lane]
                v = float(rng.uniform(*_SPEED[label])) * d
                t_cross = float(rng.uniform(0.1, 0.9)) * T
                x0 = camera.x_at(ANN_W / 2, z) - v * t_cross
            cand = Thing(0, label, "moving", x0, v, z, L, H, W, _colour(rng, label), _seed(rng),
                         facing=d)
            if fits(cand, 2.0):
                things.append(cand)
                break
    for _ in range(int(rng.integers(config.n_parked[0], config.n_parked[1] + 1))):
        for _attempt in range(30):
            label = _choice(rng, _PARKED_MIX)
            z = street.parking_near if rng.random() < 0.65 else street.parking_far
            L, H, W = _vehicle_dims(rng, label)
            x = camera.x_at(float(rng.uniform(0.12, 0.88)) * ANN_W, z)
            cand = Thing(0, label, "parked", x, 0.0, z, L, H, W, _colour(rng, label), _seed(rng),
                         facing=1 if rng.random() < 0.5 else -1)
            if fits(cand, 0.6):
                things.append(cand)
                break
    for _ in range(int(rng.integers(config.n_pedestrians[0], config.n_pedestrians[1] + 1))):
        near = rng.random() < 0.5
        z = (street.kerb_near - float(rng.uniform(0.8, 1.8)) if near
             else street.kerb_far + float(rng.uniform(0.4, 1.2)))
        speed = float(rng.uniform(1.0, 1.6)) * (1 if rng.random() < 0.5 else -1)
        x_mid = camera.x_at(float(rng.uniform(0.1, 0.9)) * ANN_W, z)
        cloth = tuple(int(c) for c in rng.integers(20, 230, 3))
        things.append(Thing(0, "pedestrian", "pedestrian", x_mid - speed * T / 2, speed, z, 0.5,
                            float(rng.uniform(1.6, 1.9)), 0.4, cloth, _seed(rng),
                            facing=1 if speed > 0 else -1, phase=float(rng.uniform(0, 2 * np.pi)),
                            rate=abs(speed) * 1.4))
    tree_us = np.sort(rng.uniform(0.05, 0.95, int(rng.integers(config.n_trees[0], config.n_trees[1] + 1))))
    for u in tree_us:
        crown = float(rng.uniform(3.0, 5.0))
        green = tuple(int(c) for c in (rng.integers(40, 90), rng.integers(90, 150), rng.integers(30, 70)))
        things.append(Thing(0, "tree", "tree", camera.x_at(float(u) * ANN_W, street.tree_line), 0.0,
                            street.tree_line, crown, float(rng.uniform(6.0, 9.0)), crown, green,
                            _seed(rng), phase=float(rng.uniform(0, 2 * np.pi)),
                            rate=float(rng.uniform(0.3, 0.7))))
    if rng.random() < config.offscreen_prob:
        for _attempt in range(30):
            label = _choice(rng, _MOVING_MIX)
            L, H, W = _vehicle_dims(rng, label)
            z = -float(rng.uniform(10.0, 22.0))
            v = float(rng.uniform(*_SPEED[label])) * (1 if rng.random() < 0.5 else -1)
            cand = Thing(0, label, "offscreen", -v * float(rng.uniform(0.1, 0.9)) * T, v, z, L, H, W,
                         _colour(rng, label), _seed(rng), facing=1 if v > 0 else -1)
            grid = np.linspace(0, T, 41)
            if inframe_fraction(box_at(camera, cand, grid)).max() == 0:
                things.append(cand)
                break
    # track ids: sounding visible vehicles first (as in the annotations), then the rest
    order = {"moving": 0, "idling": 0, "offscreen": 1, "parked": 2, "pedestrian": 3, "tree": 4}
    things.sort(key=lambda o: order[o.state])
    things = [replace(o, track_id=k + 1) for k, o in enumerate(things)]
    shaky = rng.random() < config.shake_prob
    shake = shake_offsets(rng, config.n_frames, config.fps, config.shake_amplitude if shaky else 0.0)
    return Scene(clip=clip, index=index, night=night, camera=camera, street=street,
                 things=tuple(things), shake=shake, texture_seed=_seed(rng), audio_seed=_seed(rng))


def _stop_and_go(rng: np.random.Generator, camera: Camera, street: Street, duration: float,
                 taken: list[float]) -> Thing:
    """A vehicle that drives into view and stops, or waits in view and pulls away (engine on)."""
    label = _choice(rng, {"car": 0.75, "bus": 0.12, "truck": 0.08, "motorbike": 0.05})
    lanes = [k for k, z in enumerate(street.lanes) if z not in taken] or list(range(len(street.lanes)))
    lane = lanes[int(rng.integers(len(lanes)))]
    L, H, W = _vehicle_dims(rng, label)
    z, facing = street.lanes[lane], street.lane_dirs[lane]
    x_stop = camera.x_at(float(rng.uniform(0.3, 0.7)) * ANN_W, z)
    v = facing * float(rng.uniform(*_SPEED[label])) * 0.6
    if rng.random() < 0.5:   # drives in, stops at t_s: X(t) = x_stop + v (min(t, t_s) - t_s)
        t_s = float(rng.uniform(0.2, 0.6)) * duration
        return Thing(0, label, "idling", x_stop - v * t_s, v, z, L, H, W, _colour(rng, label), _seed(rng),
                     facing=facing, move_until=t_s)
    t_g = float(rng.uniform(0.4, 0.8)) * duration   # waits, pulls away at t_g
    return Thing(0, label, "idling", x_stop - v * t_g, v, z, L, H, W, _colour(rng, label), _seed(rng),
                 facing=facing, move_from=t_g)


def audible_interval(camera: Camera, thing: Thing, duration: float) -> tuple[float, float] | None:
    """The sound event of a sounding vehicle, ``(start, end)`` in seconds within ``[0, duration]``.

    Idling: the whole clip. Moving: the hull of the times when it is within
    :data:`AUDIBLE_RADIUS` of the camera or (partly) in the frame, so every annotated box lies
    inside its own event. Offscreen: within :data:`AUDIBLE_RADIUS`. The synthesised sound of
    the vehicle is exactly zero outside this interval. None when never audible in the clip.
    """
    if not thing.sounding:
        return None
    if thing.state == "idling":
        return 0.0, float(duration)
    t = np.arange(int(round(duration * 100)) + 1) / 100.0
    r = np.hypot(thing.x(t), thing.z)
    mask = r < AUDIBLE_RADIUS
    if thing.state == "moving":
        mask |= inframe_fraction(box_at(camera, thing, t)) > 0
    if not mask.any():
        return None
    idx = np.flatnonzero(mask)
    return float(t[idx[0]]), float(t[idx[-1]])
