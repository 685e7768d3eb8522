"""Sound of synthetic street scenes: engines, tyres, footsteps and background, in stereo.

Model (all vectorised numpy / scipy.signal, no per-sample Python loops):

- Engine of a sounding vehicle: a harmonic series at the firing frequency ``f0`` with a
  class-specific range (motorbike high and rough, car mid, bus and truck low and loud), plus
  combustion noise pulsed at ``f0``. Moving vehicles run at a higher ``f0`` than idling ones.
  Synthesised at a quarter of the sample rate and upsampled (the content stays below ~3 kHz).
- Tyre / road noise (moving vehicles only): band-passed broadband noise whose level grows
  with speed (``(speed / 10 m/s) ** 1.5``).
- Propagation: amplitude ``~ 1 / distance`` (distance from the camera, at least 3 m), the
  harmonic part at the retarded time ``t - r(t) / c`` (hence a Doppler shift), a constant-power
  pan following the azimuth ``theta`` of the source (``pan = clip(theta / 60 deg, -1, 1)``, so a
  source on the left of the image is louder in the left channel).
- Each vehicle sounds only inside its annotated event (:func:`.synth_scene.audible_interval`),
  with 0.3-s raised-cosine ramps inside the event where it does not touch the clip border.
  Parked vehicles and trees are silent; pedestrians make quiet footstep clicks (optional);
  offscreen vehicles sound like moving ones.
- Background: a pink + brown noise mix at ``noise_level_db`` dBFS RMS, partly correlated
  between channels, and in half of the clips a faint distant hum.
- The mix is scaled by ``0.9 / peak`` when its peak exceeds 0.9 (deterministic, no clipping).

Output: ``np.float32`` array ``(2, samples)`` in [-1, 1] (channel 0 = left).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import signal

from vssl_core.data.synth_scene import Scene, SceneConfig, Thing, audible_interval

__all__ = ["synthesize_audio", "ENGINE_F0", "pan_gains"]

SPEED_OF_SOUND = 343.0
REF_DISTANCE = 10.0
PEAK = 0.9
# firing frequency ranges (Hz): (idle range), (running range)
ENGINE_F0 = {
    "motorbike": ((45.0, 60.0), (105.0, 150.0)),
    "car": ((26.0, 34.0), (55.0, 80.0)),
    "bus": ((18.0, 23.0), (34.0, 46.0)),
    "truck": ((19.0, 25.0), (36.0, 50.0)),
}
_LEVEL = {"motorbike": 0.07, "car": 0.05, "bus": 0.10, "truck": 0.11}   # engine amplitude at 10 m
_TYRE = {"motorbike": 0.02, "car": 0.045, "bus": 0.07, "truck": 0.075}  # tyre amplitude at 10 m/s, 10 m
_ROUGH = {"motorbike": 0.8, "car": 0.15, "bus": 0.3, "truck": 0.35}


def pan_gains(azimuth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Constant-power pan: azimuth (rad, 0 = straight ahead, < 0 = left) -> (left, right) gains."""
    p = np.clip(np.asarray(azimuth) / (np.pi / 3), -1.0, 1.0)
    angle = (p + 1.0) * np.pi / 4
    return np.cos(angle), np.sin(angle)


def _smooth_noise(rng: np.random.Generator, n: int, rate: float, cutoff: float) -> np.ndarray:
    """Zero-mean, unit-std low-pass noise of length ``n`` at ``rate`` Hz (cut-off ``cutoff`` Hz)."""
    x = rng.standard_normal(n)
    sos = signal.butter(2, min(cutoff / (rate / 2), 0.99), output="sos")
    y = signal.sosfilt(sos, x)
    return (y - y.mean()) / (y.std() + 1e-12)


def _window(t: np.ndarray, start: float, end: float, duration: float, ramp: float = 0.3) -> np.ndarray:
    w = ((t >= start) & (t <= end)).astype(np.float64)
    r = min(ramp, (end - start) / 2)
    if r > 0 and start > 0:
        m = (t >= start) & (t < start + r)
        w[m] = 0.5 - 0.5 * np.cos(np.pi * (t[m] - start) / r)
    if r > 0 and end < duration:
        m = (t > end - r) & (t <= end)
        w[m] = 0.5 - 0.5 * np.cos(np.pi * (end - t[m]) / r)
    return w


def _geometry(scene: Scene, thing: Thing, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (m) and azimuth (rad) of ``thing`` from the camera at times ``t``."""
    cam = scene.camera
    X = thing.x(t)
    Z = np.full_like(X, thing.z)
    dy = cam.height - 0.6
    r = np.sqrt(X ** 2 + Z ** 2 + dy ** 2)
    c, s = math.cos(cam.yaw), math.sin(cam.yaw)
    az = np.arctan2(X * c - Z * s, X * s + Z * c)
    return r, az


def _engine(rng: np.random.Generator, thing: Thing, t_low: np.ndarray, sr_low: int,
            r_low: np.ndarray) -> np.ndarray:
    """Engine signal (harmonics + pulsed combustion noise) at the low rate, unit-ish amplitude."""
    n = len(t_low)
    (i0, i1), (m0, m1) = ENGINE_F0[thing.label]
    moving = thing.state != "idling"
    base = rng.uniform(m0, m1) if moving else rng.uniform(i0, i1)
    drift = 0.035 if moving else 0.01
    f0 = base * (1.0 + drift * _smooth_noise(rng, n, sr_low, 0.4))
    if not moving and thing.vx != 0:   # stop-and-go: the engine revs while the vehicle moves
        run = 0.5 * (m0 + m1) / (0.5 * (i0 + i1))
        ramp = np.interp(t_low, t_low, thing.moving_at(t_low).astype(np.float64))
        ramp = np.convolve(ramp, np.ones(max(1, sr_low // 2)) / max(1, sr_low // 2), mode="same")
        f0 = f0 * (1.0 + (run - 1.0) * ramp)
    phase = 2 * np.pi * np.cumsum(f0) / sr_low
    te = t_low - r_low / SPEED_OF_SOUND            # retarded time: Doppler
    phase_r = np.interp(te, t_low, phase)
    n_harm = int(min(40, max(6, 2500.0 // (base * 1.1))))
    h = np.arange(1, n_harm + 1)
    amps = h ** -0.75 * rng.uniform(0.5, 1.3, n_harm)
    amps[1::2] *= 1.6 if thing.label == "motorbike" else 1.0
    phis = rng.uniform(0, 2 * np.pi, n_harm)
    # e^{i h phase} by repeated complex multiplication: one exp, then a product per harmonic
    z1 = np.exp(1j * phase_r)
    z = np.ones(n, np.complex128)
    out = np.zeros(n)
    for k in range(n_harm):   # loop over harmonics, vectorised over samples
        z *= z1
        out += amps[k] * (z.imag * np.cos(phis[k]) + z.real * np.sin(phis[k]))
    out /= np.sqrt((amps ** 2).sum() / 2)
    rough = _ROUGH[thing.label]
    am = 1.0 + rough * _smooth_noise(rng, n, sr_low, base * 1.5)
    pulse = ((1 + np.cos(phase_r)) / 2) ** 3
    band = signal.butter(2, [150 / (sr_low / 2), min(1800 / (sr_low / 2), 0.95)], "bandpass", output="sos")
    comb = signal.sosfilt(band, rng.standard_normal(n))
    comb /= comb.std() + 1e-12
    return out * am + 0.6 * pulse * comb


def synthesize_audio(scene: Scene, config: SceneConfig) -> np.ndarray:
    """The stereo sound of ``scene``: ``np.float32`` array ``(2, samples)`` in [-1, 1]."""
    sr = config.sample_rate
    n = int(round(config.duration * sr))
    rng = np.random.default_rng(scene.audio_seed)
    t = np.arange(n) / sr
    down = 4 if sr % 4 == 0 and sr >= 32000 else 1
    sr_low = sr // down
    n_low = -(-n // down)
    t_low = np.arange(n_low) / sr_low
    t_ctl = np.arange(int(round(config.duration * 1000)) + 1) / 1000.0
    mix = np.zeros((2, n))
    tyre_band = signal.butter(2, [250 / (sr / 2), 3500 / (sr / 2)], "bandpass", output="sos")
    for thing in scene.things:
        span = audible_interval(scene.camera, thing, config.duration)
        if span is None or not thing.is_vehicle:
            continue
        vrng = np.random.default_rng(thing.seed)
        r_low = np.interp(t_low, t_ctl, _geometry(scene, thing, t_ctl)[0])
        eng = _engine(vrng, thing, t_low, sr_low, r_low)
        if down > 1:
            eng = signal.resample_poly(eng, down, 1)[:n]
        src = _LEVEL[thing.label] * eng
        if thing.state != "idling" or thing.vx != 0:
            tyre = signal.sosfilt(tyre_band, vrng.standard_normal(n))
            tyre *= _TYRE[thing.label] * (abs(thing.vx) / 10.0) ** 1.5 / (tyre.std() + 1e-12)
            if thing.state == "idling":   # stop-and-go: tyres only while it moves
                tyre *= thing.moving_at(t)
            src = src + tyre
        # distance, pan and event window at a 1-kHz control rate (event ends lie on its grid)
        r, az = _geometry(scene, thing, t_ctl)
        gain = REF_DISTANCE / np.maximum(r, 3.0) * _window(t_ctl, span[0], span[1], config.duration)
        gl, gr = pan_gains(az)
        mix[0] += src * np.interp(t, t_ctl, gain * gl)
        mix[1] += src * np.interp(t, t_ctl, gain * gr)
    if config.footsteps:
        mix += _footsteps(scene, config, rng, t)
    mix += _background(config, rng, n)
    peak = float(np.abs(mix).max()) if n else 0.0
    if peak > PEAK:
        mix *= PEAK / peak
    return mix.astype(np.float32)


def _footsteps(scene: Scene, config: SceneConfig, rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    sr = config.sample_rate
    n = len(t)
    out = np.zeros((2, n))
    k = int(0.03 * sr)
    burst = rng.standard_normal(k) * np.exp(-np.arange(k) / (0.006 * sr))
    burst = signal.sosfilt(signal.butter(2, 2500 / (sr / 2), output="sos"), burst)
    burst /= np.abs(burst).max() + 1e-12
    for thing in scene.things:
        if thing.label != "pedestrian" or thing.rate <= 0:
            continue
        first = (thing.phase / (2 * np.pi)) / thing.rate
        steps = np.arange(first, config.duration, 1.0 / thing.rate)
        if len(steps) == 0:
            continue
        r, az = _geometry(scene, thing, steps)
        g = 0.05 * 2.0 / np.maximum(r, 2.0) * rng.uniform(0.6, 1.0, len(steps))
        gl, gr = pan_gains(az)
        for i0, a, b in zip((steps * sr).astype(np.int64), g * gl, g * gr):   # a few steps
            m = min(k, n - i0)
            out[0, i0:i0 + m] += a * burst[:m]
            out[1, i0:i0 + m] += b * burst[:m]
    return out


def _background(config: SceneConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    sr = config.sample_rate
    white = rng.standard_normal((3, n))
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]   # pink (-3 dB/oct) approximation
    a = [1.0, -2.494956002, 2.017265875, -0.522189400]
    pink = signal.lfilter(b, a, white, axis=1)
    brown = signal.lfilter([1.0], [1.0, -0.995], white, axis=1)
    hp = signal.butter(2, 25 / (sr / 2), "highpass", output="sos")
    noise = signal.sosfilt(hp, pink / pink.std() + 0.5 * brown / brown.std(), axis=1)
    bg = np.stack([0.6 * noise[0] + 0.8 * noise[1], 0.6 * noise[0] + 0.8 * noise[2]])
    bg *= 10 ** (config.noise_level_db / 20) / (bg.std() + 1e-12)
    if rng.random() < 0.5:
        t = np.arange(n) / sr
        f = rng.uniform(45.0, 65.0)
        hum = sum(np.sin(2 * np.pi * f * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
        hum *= 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t)
        bg += 10 ** ((config.noise_level_db - 8) / 20) * hum[None, :] / 1.3
    return bg
