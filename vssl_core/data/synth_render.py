"""Drawing of synthetic street scenes (numpy + OpenCV).

The static background (road, kerbs, sidewalks, facades, sky, lamp posts, tree trunks) is
ray-cast once per clip at 2x supersampling, with value-noise textures anchored in world
coordinates so that the surfaces carry texture for optical flow and keep their perspective.
Each frame then composites the moving parts far-to-near: swaying tree crowns, pedestrians with
swinging limbs, and vehicles (a textured side silhouette per class, mapped onto the projected
near side face by a homography), night lights, and finally the camera shake as a whole-frame
translation (``cv2.warpAffine``, reflected border).

Images are ``np.uint8`` RGB arrays ``(height, width, 3)``; geometry comes in 1280x720
annotation pixels from :mod:`.synth_scene` and is scaled here to the rendered size.
"""
from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from vssl_core.data.synth_scene import ANN_H, ANN_W, Scene, SceneConfig, Thing, face_quad, face_z

__all__ = ["render_background", "render_frames", "FrameRenderer"]

_SS = 2  # background supersampling factor
_NIGHT = 0.24  # brightness of unlit surfaces at night


def _noise_table(rng: np.random.Generator, n: int = 256) -> np.ndarray:
    return rng.random((n, n), dtype=np.float32)


def _sample(table: np.ndarray, a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """Value noise in [0, 1] at world coordinates ``(a, b)`` with feature size ``scale`` (m)."""
    ma = np.nan_to_num(a / scale, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    mb = np.nan_to_num(b / scale, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    ma = np.mod(ma, table.shape[1]).astype(np.float32)
    mb = np.mod(mb, table.shape[0]).astype(np.float32)
    return cv2.remap(table, ma, mb, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def _cell_hash(table: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    n = table.shape[0]
    return table[np.mod(j.astype(np.int64) * 7 + 3, n), np.mod(i.astype(np.int64) * 13 + 5, n)]


def render_background(scene: Scene, width: int, height: int) -> np.ndarray:
    """The static part of the scene, ``(height, width, 3)`` uint8 RGB."""
    # rays that never meet a surface carry inf coordinates; they are masked out below
    with np.errstate(invalid="ignore", over="ignore"):
        return _render_background(scene, width, height)


def _render_background(scene: Scene, width: int, height: int) -> np.ndarray:
    cam, st = scene.camera, scene.street
    rng = np.random.default_rng(scene.texture_seed)
    tab = [_noise_table(rng) for _ in range(3)]
    W2, H2 = width * _SS, height * _SS
    dx, dy, dz = cam.rays(W2, H2)
    with np.errstate(divide="ignore", invalid="ignore"):
        tg = np.where(dy < -1e-9, cam.height / -dy, np.inf)
        tf = np.where(dz > 1e-9, st.facade / dz, np.inf)
    Xg, Zg = tg * dx, tg * dz
    Xf, Yf = tf * dx, cam.height + tf * dy
    edges = np.asarray(st.building_edges)
    seg = np.clip(np.searchsorted(edges, np.nan_to_num(Xf, posinf=0, neginf=0)) - 1, 0, len(edges) - 2)
    hb = np.asarray(st.building_heights)[seg]
    ground = tg < tf
    facade = ~ground & np.isfinite(tf) & (Yf < hb)
    sky = ~ground & ~facade
    img = np.zeros((H2, W2, 3), np.float32)
    light = np.zeros((H2, W2), np.float32)   # self-lit share (kept at night)

    # --- ground: sidewalks, kerbs, road with markings ---
    n1 = _sample(tab[0], Xg, Zg, 0.07)
    n2 = _sample(tab[1], Xg, Zg, 0.9)
    n3 = _sample(tab[2], Xg, Zg, 6.0)
    road = (Zg > st.kerb_near) & (Zg < st.kerb_far)
    asphalt = 72 + 40 * n1 + 22 * n2 + 14 * n3
    g = np.repeat(asphalt[..., None], 3, -1) * np.array([1.0, 1.0, 1.04], np.float32)
    tile = 0.6
    grout = (np.mod(Xg, tile) < 0.035) | (np.mod(Zg, tile) < 0.035)
    pave = 150 + 35 * n1 + 20 * n2 - 45 * grout
    side = np.stack([pave * 1.02, pave * 0.98, pave * 0.9], -1)
    g = np.where(road[..., None], g, side)
    kerb = (np.abs(Zg - st.kerb_near) < 0.18) | (np.abs(Zg - st.kerb_far) < 0.18)
    g = np.where(kerb[..., None], (185 + 30 * n1)[..., None] * np.ones(3, np.float32), g)
    mark = np.zeros_like(road)
    for zl in (st.kerb_near + 2.2, st.kerb_far - 2.2):   # parking lane edges
        mark |= (np.abs(Zg - zl) < 0.07)
    lanes = np.asarray(st.lanes)
    dirs = np.asarray(st.lane_dirs)
    for k in range(len(lanes) - 1):
        zb = (lanes[k] + lanes[k + 1]) / 2
        line = np.abs(Zg - zb) < 0.07
        if dirs[k] != dirs[k + 1]:
            mark |= line & (np.mod(Xg, 6.0) < 3.5)
        else:
            mark |= line & (np.mod(Xg, 9.0) < 3.0)
    if st.crossing_x is not None:
        zebra = (Xg > st.crossing_x) & (Xg < st.crossing_x + 4.0) & road & (np.mod(Zg, 1.0) < 0.5)
        mark |= zebra
    paint = (205 + 30 * n1)[..., None] * np.array([1.0, 1.0, 0.97], np.float32)
    g = np.where((mark & road)[..., None], paint, g)
    img = np.where(ground[..., None], g, img)

    # --- facades ---
    cols = np.asarray(st.building_colours, np.float32)[seg]
    m1 = _sample(tab[0], Xf, Yf, 0.05)
    m2 = _sample(tab[1], Xf, Yf, 1.5)
    f = cols * (0.82 + 0.22 * m1 + 0.12 * m2)[..., None]
    xo = Xf - edges[seg]
    win_x = np.mod(xo - 0.8, 3.0)
    win_y = np.mod(Yf - 4.0, 3.2)
    upper = (Yf > 4.0) & (Yf < hb - 1.0)
    window = upper & (win_x < 1.3) & (win_y > 0.7) & (win_y < 2.3)
    frame_ = upper & (win_x < 1.45) & (win_y > 0.6) & (win_y < 2.4)
    cell_i = np.floor((xo - 0.8) / 3.0) + seg * 37
    cell_j = np.floor((Yf - 4.0) / 3.2)
    cellv = _cell_hash(tab[2], cell_i, cell_j)
    glass = np.stack([55 + 50 * m2, 70 + 50 * m2, 90 + 55 * m2], -1) * (0.8 + 0.4 * cellv)[..., None]
    shop = (Yf < 3.4) & (np.mod(xo, 5.0) > 0.6) & (Yf > 0.4)
    sign = (Yf >= 3.4) & (Yf < 3.9)
    f = np.where(frame_[..., None], f * 0.7, f)
    f = np.where(window[..., None], glass, f)
    f = np.where(shop[..., None], glass * 0.8, f)
    f = np.where(sign[..., None], f * 0.55, f)
    f = np.where((Yf > hb - 0.6)[..., None], f * 0.75, f)
    f = np.where((np.abs(xo) < 0.12)[..., None], f * 0.6, f)
    img = np.where(facade[..., None], f, img)

    # --- sky ---
    vv = np.linspace(0, 1, H2, dtype=np.float32)[:, None] * np.ones((1, W2), np.float32)
    cloud = _sample(tab[1], dx / np.maximum(dz, 1e-3) * 30, dy / np.maximum(dz, 1e-3) * 30, 4.0)
    if scene.night:
        s = np.stack([10 + 15 * vv, 13 + 17 * vv, 28 + 25 * vv], -1) / _NIGHT
    else:
        s = np.stack([125 + 80 * vv, 165 + 55 * vv, 215 + 20 * vv], -1)
        s = s + (np.clip(cloud - 0.55, 0, None) * 120)[..., None]
    img = np.where(sky[..., None], s, img)

    if scene.night:
        lit = facade & (window | shop) & (cellv > 0.62)
        warm = np.array([255, 205, 120], np.float32) * (0.75 + 0.25 * m1)[..., None]
        img = np.where(lit[..., None], warm, img)
        light = np.where(lit, 1.0, light)
        # pools of lamp light on the ground
        pool = np.zeros_like(light)
        for xl in st.lamp_xs:
            d2 = (Xg - xl) ** 2 + (Zg - (st.kerb_far - 1.0)) ** 2
            pool += np.exp(-d2 / 18.0).astype(np.float32)
        light = np.maximum(light, np.where(ground, np.clip(pool, 0, 1) * 0.8, 0))
        img = img * (_NIGHT + (1 - _NIGHT) * light)[..., None]

    img = np.clip(img, 0, 255).astype(np.uint8)
    _draw_posts(img, scene, _SS * width / ANN_W)
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def _pt(u: float, v: float, s: float) -> tuple[int, int]:
    return int(round(u * s * 16)), int(round(v * s * 16))


def _draw_posts(img: np.ndarray, scene: Scene, s: float) -> None:
    """Lamp posts and tree trunks (static), in place; ``s`` = image px per annotation px."""
    cam, st = scene.camera, scene.street
    k = _NIGHT if scene.night else 1.0
    zl = st.kerb_far + 0.4
    for xl in st.lamp_xs:
        u, v, zc = cam.project([xl, xl, xl - 0.0], [0.0, 6.0, 6.0], [zl, zl, zl - 1.2])
        if zc.min() < 1.0 or not (-200 < u[0] < ANN_W + 200):
            continue
        th = max(1, int(round(0.14 * cam.f / zc[0] * s)))
        col = tuple(int(c * k) for c in (60, 62, 66))
        cv2.line(img, _pt(u[0], v[0], s), _pt(u[1], v[1], s), col, th, cv2.LINE_AA, 4)
        cv2.line(img, _pt(u[1], v[1], s), _pt(u[2], v[2], s), col, th, cv2.LINE_AA, 4)
        head = (255, 240, 190) if scene.night else (200, 200, 190)
        cv2.circle(img, _pt(u[2], v[2], s), max(1, int(0.25 * cam.f / zc[2] * s)) * 16, head, -1,
                   cv2.LINE_AA, 4)
    for t in scene.things:
        if t.label != "tree":
            continue
        top = t.height - 0.55 * t.length
        u, v, zc = cam.project([t.x0, t.x0], [0.0, top], [t.z, t.z])
        th = max(1, int(round(0.35 * cam.f / zc[0] * s)))
        col = tuple(int(c * k) for c in (85, 62, 42))
        cv2.line(img, _pt(u[0], v[0], s), _pt(u[1], v[1], s), col, th, cv2.LINE_AA, 4)


# ---------------------------------------------------------------------------------------------
# sprites

def _poly(canvas: np.ndarray, alpha: np.ndarray, pts, colour, sw: int, sh: int) -> None:
    p = np.round(np.array(pts, np.float64) * [sw, sh] * 16).astype(np.int32)
    cv2.fillPoly(canvas, [p], colour, cv2.LINE_AA, 4)
    cv2.fillPoly(alpha, [p], 255, cv2.LINE_AA, 4)


def _circle(canvas, alpha, c, r, colour, sw, sh) -> None:
    ctr = (int(round(c[0] * sw * 16)), int(round(c[1] * sh * 16)))
    cv2.circle(canvas, ctr, max(1, int(round(r * 16))), colour, -1, cv2.LINE_AA, 4)
    if alpha is not None:
        cv2.circle(alpha, ctr, max(1, int(round(r * 16))), 255, -1, cv2.LINE_AA, 4)


def _vehicle_sprite(thing: Thing, sw: int, sh: int, night: bool) -> np.ndarray:
    """Premultiplied RGBA float32 sprite ``(sh, sw, 4)`` of the side view, front at the right."""
    rng = np.random.default_rng(thing.seed)
    body = np.array(thing.colour, np.float64)
    dark = (22, 22, 24)
    glass = (50, 62, 78)
    rgb = np.zeros((sh, sw, 3), np.uint8)
    a = np.zeros((sh, sw), np.uint8)
    col = tuple(int(c) for c in body)
    wheels: list[tuple[float, float, float]] = []
    if thing.label == "car":
        _poly(rgb, a, [(0.02, 0.86), (0.0, 0.6), (0.03, 0.46), (0.22, 0.42), (0.32, 0.05), (0.66, 0.05),
                       (0.80, 0.42), (0.97, 0.48), (1.0, 0.63), (0.99, 0.86)], col, sw, sh)
        _poly(rgb, a, [(0.25, 0.40), (0.34, 0.10), (0.47, 0.10), (0.47, 0.40)], glass, sw, sh)
        _poly(rgb, a, [(0.50, 0.40), (0.50, 0.10), (0.64, 0.10), (0.76, 0.40)], glass, sw, sh)
        _poly(rgb, a, [(0.95, 0.52), (1.0, 0.54), (1.0, 0.6), (0.95, 0.6)], (235, 235, 215), sw, sh)
        _poly(rgb, a, [(0.0, 0.50), (0.03, 0.50), (0.03, 0.58), (0.0, 0.58)], (170, 20, 20), sw, sh)
        wheels = [(0.19, 0.80, 0.19), (0.81, 0.80, 0.19)]
    elif thing.label == "bus":
        _poly(rgb, a, [(0.0, 0.04), (0.99, 0.04), (1.0, 0.1), (1.0, 0.9), (0.0, 0.9)], col, sw, sh)
        nwin = 6
        for k in range(nwin):
            x0 = 0.03 + k * 0.145
            _poly(rgb, a, [(x0, 0.14), (x0 + 0.125, 0.14), (x0 + 0.125, 0.48), (x0, 0.48)], glass, sw, sh)
        _poly(rgb, a, [(0.915, 0.12), (0.995, 0.12), (0.995, 0.62), (0.915, 0.62)], glass, sw, sh)
        _poly(rgb, a, [(0.80, 0.52), (0.87, 0.52), (0.87, 0.88), (0.80, 0.88)], (40, 45, 50), sw, sh)
        _poly(rgb, a, [(0.0, 0.58), (1.0, 0.58), (1.0, 0.62), (0.0, 0.62)],
              tuple(int(c * 0.6) for c in body), sw, sh)
        wheels = [(0.17, 0.88, 0.12), (0.80, 0.88, 0.12)]
    elif thing.label == "truck":
        box = tuple(int(c) for c in (np.array([225, 225, 220]) if rng.random() < 0.6 else body))
        _poly(rgb, a, [(0.0, 0.0), (0.73, 0.0), (0.73, 0.80), (0.0, 0.80)], box, sw, sh)
        _poly(rgb, a, [(0.0, 0.78), (1.0, 0.78), (1.0, 0.86), (0.0, 0.86)], dark, sw, sh)
        _poly(rgb, a, [(0.75, 0.25), (0.92, 0.25), (1.0, 0.48), (1.0, 0.84), (0.75, 0.84)], col, sw, sh)
        _poly(rgb, a, [(0.79, 0.30), (0.91, 0.30), (0.97, 0.48), (0.79, 0.48)], glass, sw, sh)
        wheels = [(0.11, 0.87, 0.13), (0.26, 0.87, 0.13), (0.87, 0.87, 0.13)]
    else:  # motorbike with rider
        wheels = [(0.18, 0.79, 0.21), (0.82, 0.79, 0.21)]
        _poly(rgb, a, [(0.22, 0.66), (0.40, 0.46), (0.72, 0.44), (0.84, 0.62), (0.62, 0.72)], col, sw, sh)
        _poly(rgb, a, [(0.40, 0.46), (0.50, 0.12), (0.62, 0.12), (0.58, 0.48)], (40, 45, 60), sw, sh)
        _poly(rgb, a, [(0.45, 0.5), (0.6, 0.5), (0.66, 0.76), (0.58, 0.76)], (35, 35, 45), sw, sh)
        _poly(rgb, a, [(0.58, 0.16), (0.78, 0.36), (0.74, 0.40), (0.55, 0.24)], (40, 45, 60), sw, sh)
        _circle(rgb, a, (0.57, 0.08), 0.085 * sh, tuple(int(c) for c in rng.integers(30, 230, 3)), sw, sh)
    for (cx, cy, r) in wheels:
        _circle(rgb, a, (cx, cy), r * sh, dark, sw, sh)
        _circle(rgb, a, (cx, cy), r * sh * 0.5, (120, 122, 128), sw, sh)
    # texture: grain, top-lit shading, grime towards the bottom
    tex = rng.random((max(2, sh // 3), max(2, sw // 3)), dtype=np.float32)
    tex = cv2.resize(tex, (sw, sh), interpolation=cv2.INTER_LINEAR)
    fine = rng.random((sh, sw), dtype=np.float32)
    yy = np.linspace(0, 1, sh, dtype=np.float32)[:, None]
    shade = (1.08 - 0.25 * yy) * (0.86 + 0.2 * tex + 0.08 * fine)
    out = rgb.astype(np.float32) * shade[..., None]
    if night:
        out *= _NIGHT
    alpha = a.astype(np.float32) / 255.0
    return np.concatenate([np.clip(out, 0, 255) * alpha[..., None], alpha[..., None]], -1)


def _crown_sprite(thing: Thing, size: int, night: bool, layer: int) -> np.ndarray:
    """Premultiplied RGBA crown layer ``(size, size, 4)``: leafy blobs with holes."""
    rng = np.random.default_rng(thing.seed + 101 * layer)
    a = np.zeros((size, size), np.float32)
    for _ in range(9):
        c = rng.uniform(0.25, 0.75, 2) * size
        r = rng.uniform(0.16, 0.28) * size
        cv2.circle(a, (int(c[0]), int(c[1])), int(r), 1.0, -1, cv2.LINE_AA)
    leaves = rng.random((max(2, size // 2), max(2, size // 2)), dtype=np.float32)
    leaves = cv2.resize(leaves, (size, size), interpolation=cv2.INTER_LINEAR)
    a = a * (leaves > 0.28)
    a = cv2.GaussianBlur(a, (0, 0), max(0.5, size / 200))
    base = np.array(thing.colour, np.float32) * (0.85 if layer == 0 else 1.05)
    rgb = base * (0.6 + 0.7 * leaves)[..., None]
    if night:
        rgb *= _NIGHT
    return np.concatenate([np.clip(rgb, 0, 255) * a[..., None], a[..., None]], -1)


def _composite(frame: np.ndarray, sprite: np.ndarray, M: np.ndarray, perspective: bool,
               roi: tuple[int, int, int, int]) -> None:
    """Blend a premultiplied sprite into ``frame`` (float32) through ``M`` inside ``roi``."""
    x0, y0, x1, y1 = roi
    if x1 <= x0 or y1 <= y0:
        return
    T = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
    if perspective:
        warped = cv2.warpPerspective(sprite, T @ M, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    else:
        warped = cv2.warpAffine(sprite, (T @ M)[:2], (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    region = frame[y0:y1, x0:x1]
    region *= 1.0 - warped[..., 3:4]
    region += warped[..., :3]


def _roi(pts: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    x0 = int(max(0, np.floor(pts[:, 0].min()) - 1))
    y0 = int(max(0, np.floor(pts[:, 1].min()) - 1))
    x1 = int(min(width, np.ceil(pts[:, 0].max()) + 2))
    y1 = int(min(height, np.ceil(pts[:, 1].max()) + 2))
    return x0, y0, x1, y1


def _glow(frame: np.ndarray, c: tuple[float, float], radius: float, colour, strength: float) -> None:
    r = max(1.5, radius)
    h, w = frame.shape[:2]
    x0, x1 = int(max(0, c[0] - 3 * r)), int(min(w, c[0] + 3 * r + 1))
    y0, y1 = int(max(0, c[1] - 3 * r)), int(min(h, c[1] + 3 * r + 1))
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    g = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * (r / 1.5) ** 2)) * strength
    frame[y0:y1, x0:x1] += g[..., None] * np.asarray(colour, np.float32)


class FrameRenderer:
    """Renders the frames of one scene; construct once, call :meth:`frame` per frame index."""

    def __init__(self, scene: Scene, config: SceneConfig):
        self.scene, self.cfg = scene, config
        self.w, self.h = config.width, config.height
        self.s = self.w / ANN_W            # image px per annotation px (x); y uses h / ANN_H
        self.sy = self.h / ANN_H
        self.background = render_background(scene, self.w, self.h).astype(np.float32)
        times = np.arange(config.n_frames) / config.fps
        self.times = times
        self.quads: dict[int, np.ndarray] = {}
        self.depths: dict[int, np.ndarray] = {}
        self.sprites: dict[int, list[np.ndarray]] = {}
        for t in scene.things:
            if t.state == "offscreen":
                continue
            uv, zc = face_quad(scene.camera, t, times)
            q = uv * np.array([self.s, self.sy])
            self.quads[t.track_id] = q
            self.depths[t.track_id] = zc.mean(-1)
            visible = (zc.min(-1) > 0.5)
            if t.is_vehicle:
                qs = q[visible]
                if len(qs) == 0:
                    continue
                pw = float(np.max(np.linalg.norm(qs[:, 1] - qs[:, 0], axis=-1)))
                ph = float(np.max(np.linalg.norm(qs[:, 3] - qs[:, 0], axis=-1)))
                sw = int(np.clip(np.ceil(pw * 1.5), 8, 3 * self.w))
                sh = int(np.clip(np.ceil(ph * 1.5), 6, 3 * self.h))
                self.sprites[t.track_id] = [_vehicle_sprite(t, sw, sh, scene.night)]
            elif t.label == "tree":
                size = int(np.clip(np.ceil(np.abs(q[0, 1, 0] - q[0, 0, 0]) * 1.2), 8, 2 * self.w))
                self.sprites[t.track_id] = [_crown_sprite(t, size, scene.night, k) for k in range(2)]

    def _vehicle(self, frame: np.ndarray, t: Thing, i: int) -> None:
        q = self.quads[t.track_id][i]
        sprite = self.sprites.get(t.track_id)
        if sprite is None:
            return
        sp = sprite[0]
        sh, sw = sp.shape[:2]
        src = np.array([[0, sh], [sw, sh], [sw, 0], [0, 0]], np.float32)
        if t.facing < 0:
            src = src[[1, 0, 3, 2]]
        M = cv2.getPerspectiveTransform(src, q.astype(np.float32))
        _composite(frame, sp, M, True, _roi(q, self.w, self.h))
        if self.scene.night and t.state in ("moving", "idling"):
            front = 1 if t.facing > 0 else 0
            fb, ft = q[front], q[3 - front]
            rb, rt = q[1 - front], q[2 + front]
            hl = fb + 0.42 * (ft - fb)
            tl = rb + 0.45 * (rt - rb)
            size = np.linalg.norm(ft - fb)
            _glow(frame, (hl[0], hl[1]), 0.16 * size, (255, 245, 215), 1.6)
            _glow(frame, (tl[0], tl[1]), 0.09 * size, (255, 40, 30), 1.0)

    def _pedestrian(self, frame: np.ndarray, t: Thing, i: int, time: float) -> None:
        q = self.quads[t.track_id][i]
        if self.depths[t.track_id][i] < 0.5:
            return
        foot = (q[0] + q[1]) / 2
        head = (q[2] + q[3]) / 2
        hpx = foot[1] - head[1]
        if hpx < 2 or foot[0] < -hpx or foot[0] > self.w + hpx:
            return
        k = _NIGHT * 1.3 if self.scene.night else 1.0
        sw = np.sin(2 * np.pi * t.rate / 2 * time + t.phase)
        hip = foot + (head - foot) * 0.50
        sho = foot + (head - foot) * 0.80
        th = max(1, int(round(hpx * 0.075)))
        legs = tuple(int(c * k) for c in (40, 42, 55))
        cloth = tuple(int(c * k) for c in t.colour)
        skin = tuple(int(c * k) for c in (205, 160, 130))
        stride = 0.26 * hpx * t.facing
        for sgn in (1, -1):
            f = (foot[0] + sgn * sw * stride, foot[1])
            cv2.line(frame, _pt(hip[0], hip[1], 1), _pt(f[0], f[1], 1), legs, th, cv2.LINE_AA, 4)
        cv2.line(frame, _pt(hip[0], hip[1], 1), _pt(sho[0], sho[1], 1), cloth, int(th * 1.8) + 1,
                 cv2.LINE_AA, 4)
        for sgn in (1, -1):
            hand = (sho[0] - sgn * sw * stride * 0.7, sho[1] + 0.33 * hpx)
            cv2.line(frame, _pt(sho[0], sho[1], 1), _pt(hand[0], hand[1], 1), cloth, th, cv2.LINE_AA, 4)
        c = head + (foot - head) * 0.07
        cv2.circle(frame, _pt(c[0], c[1], 1), max(16, int(round(hpx * 0.065 * 16))), skin, -1,
                   cv2.LINE_AA, 4)

    def _tree(self, frame: np.ndarray, t: Thing, time: float) -> None:
        q = self.quads[t.track_id][0]
        layers = self.sprites[t.track_id]
        size = layers[0].shape[0]
        top = (q[2] + q[3]) / 2
        px_per_m = np.linalg.norm(q[1] - q[0]) / t.length
        for k, sp in enumerate(layers):
            gust = 0.6 + 0.4 * np.sin(2 * np.pi * 0.11 * time + t.phase)
            sway = px_per_m * gust * (0.22 * np.sin(2 * np.pi * t.rate * time + t.phase + 1.3 * k)
                                      + 0.08 * np.sin(2 * np.pi * 2.7 * t.rate * time + 2.1 * k))
            scale = size / (t.length * px_per_m * 1.2) if px_per_m > 0 else 1.0
            cx, cy = top[0] + sway, top[1] + 0.5 * t.length * px_per_m * 1.1
            inv = 1.0 / scale
            M = np.array([[inv, 0.0, cx - inv * size / 2], [0.0, inv, cy - inv * size / 2], [0, 0, 1]])
            corners = (M @ np.array([[0, 0, 1], [size, 0, 1], [size, size, 1], [0, size, 1]]).T).T[:, :2]
            _composite(frame, sp, M, False, _roi(corners, self.w, self.h))

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as ``(height, width, 3)`` uint8 RGB."""
        time = float(self.times[i])
        frame = self.background.copy()
        drawn = [t for t in self.scene.things if t.state != "offscreen"]
        drawn.sort(key=lambda t: -face_z(t))   # painter's order: nearer lanes hide farther ones
        for t in drawn:
            if t.label == "tree":
                self._tree(frame, t, time)
            elif t.label == "pedestrian":
                self._pedestrian(frame, t, i, time)
            else:
                self._vehicle(frame, t, i)
        du, dv = self.scene.shake[i] if len(self.scene.shake) else (0.0, 0.0)
        if du or dv:
            M = np.array([[1, 0, du * self.s], [0, 1, dv * self.sy]], np.float32)
            frame = cv2.warpAffine(frame, M, (self.w, self.h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT)
        return np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def render_frames(scene: Scene, config: SceneConfig) -> Iterator[np.ndarray]:
    """All frames of the scene in order, ``(height, width, 3)`` uint8 RGB each."""
    r = FrameRenderer(scene, config)
    for i in range(config.n_frames):
        yield r.frame(i)
