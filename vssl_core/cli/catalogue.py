"""Every trainable model the notebooks use, under one profile: the input of ``python -m vssl_core train``.

This is the one place that knows which study trains which models; it lives with the command line,
the only layer above the studies. :func:`profile_needs` estimates what running notebooks under a
profile costs (disk, memory, time); ``regenerate`` prints it before it starts any other profile
than ``quick``. Names are unique across studies:
``rcgrad-prior``, ``rcgrad``, ``flowgrad_ic``, ``flowgrad_en`` (notebook 02, reused by 03-05),
``htf-prior``, ``htf-a`` .. ``htf-f``, ``htf-maxpool`` (notebook 03), ``oya-prior``,
``oya-<size>`` (notebook 04).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vssl_core.training.store import Models, ModelSpec

__all__ = ["all_specs", "profile_needs", "needs_text"]


def all_specs(profile: str, models: Models, overrides: Mapping[str, Any] | None = None,
              progress: bool = True) -> dict[str, ModelSpec]:
    """Name -> spec of every model of ``profile`` (with ``overrides`` applied to every study's
    Setup), in training order (a model after the models it starts from)."""
    from vssl_core.studies import do_we_need_sound, flowgrad, hear_the_flow

    specs: dict[str, ModelSpec] = {}
    family = flowgrad.FlowGradSetup.for_profile(profile, overrides)
    specs.update({s.name: s for s in flowgrad.model_specs(family, models, progress).values()})
    htf = hear_the_flow.HearTheFlowSetup.for_profile(profile, overrides)
    specs.update({s.name: s for s in hear_the_flow.model_specs(htf, models, progress).values()})
    oya = do_we_need_sound.OyaSetup.for_profile(profile, overrides)
    data = do_we_need_sound.data_setup(oya, do_we_need_sound.rcgrad_setup(profile, oya, overrides))
    specs.update({s.name: s for s in do_we_need_sound.model_specs(oya, data, models, progress).values()})
    return specs


# ------------------------------------------------------------------------------------ needs
#: Synthetic scenes on disk: bytes per clip-second (320x180 mp4 + wav + annotations; measured
#: on the quick profile's sets: 160 ten-second clips take 401 MB).
SYNTH_BYTES_PER_SECOND = 262_000
#: Generating the scenes: CPU core-seconds per clip-second (the quick set: ~3 min on 2 cores).
SYNTH_CORE_SECONDS_PER_SECOND = 0.23
#: FlowGrad pairs per 10-s synthetic clip (quick profile: 534 pairs on 40 clips).
PAIRS_PER_CLIP_SECOND = 1.34
#: Training one RCGrad pair (224 px, width 1.0, 5 s at 16 kHz; forward, backward, Adam) on 2
#: CPU cores, seconds (measured, torch 2.14 CPU); the other models are scaled from it.
CPU_SECONDS_PER_PAIR = 0.094
#: Assumed speed-up of one datacentre GPU over 2 CPU cores for these ResNet-18s (not measured).
GPU_SPEEDUP = 50.0
#: A ResNet-18 encoder at width 1.0 on disk (float32), bytes.
ENCODER_BYTES = 45e6
#: Training memory per pair of a batch (activations, 224 px, width 1.0, RCGrad), bytes: measured
#: as the growth of the peak RSS over batch 8 on the CPU (also the order of the GPU's need).
ACTIVATION_BYTES_PER_PAIR = 40e6


def _eval_row(size: int, audio_samples: float, field: bool) -> float:
    """Bytes of one cached evaluation pair: image, flow and gt (224 grid; gt also as float32),
    audio, optional flow field."""
    return size * size * 3 + 224 * 224 * (4 + 1 + 4) + audio_samples * 4 + (size * size * 8 if field else 0)


def _window_row(size: int, audio_samples: float, field: bool) -> float:
    """Bytes of one cached training window: image, audio, flow (or flow field)."""
    return size * size * 3 + audio_samples * 4 + (size * size * 8 if field else size * size * 4)


def _cost(size: int, width: float, audio_samples: float, images: int = 1) -> float:
    """Training seconds of one pair on 2 CPU cores, scaled from :data:`CPU_SECONDS_PER_PAIR`
    (half image at 224 px, half 5 s of 16-kHz audio; ``images`` image-sized encoders)."""
    return CPU_SECONDS_PER_PAIR * width ** 2 * (0.5 * images * (size / 224) ** 2 + 0.5 * audio_samples / 80_000)


def profile_needs(profile: str, notebooks: list[str], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Rough disk, memory and time needs of running ``notebooks`` (stems) under ``profile``.

    Estimates from the sizes of the setups (with ``overrides``), counted once when notebooks
    share them (the synthetic sets, the RCGrad family's windows and models): synthetic video
    and audio (:data:`SYNTH_BYTES_PER_SECOND`), cached arrays (one copy each), trained models;
    the largest in-memory arrays (the object priors' frames, a training batch); training time
    as every model's epoch maximum (early stopping usually ends sooner) on 2 CPU cores
    (measured per pair) and on one GPU (an assumed :data:`GPU_SPEEDUP`).

    Returns
    -------
    dict
        ``disk_gb``, ``items`` (``{what: GB}``), ``memory_gb``, ``batch_memory_gb``,
        ``cpu_hours``, ``gpu_hours``, ``data_hours`` (generating the synthetic scenes on 2 cores).
    """
    from vssl_core.studies import do_we_need_sound, flowgrad, flowgrad_motion, hear_the_flow
    from vssl_core.repro.profiles import profile_values

    overrides = dict(overrides or {})
    disk: dict[str, float] = {}
    synth_seconds: dict[str, float] = {}
    memory: list[float] = []
    batch_memory: list[float] = [0.0]
    train: dict[str, float] = {}

    def values(table: str) -> dict[str, Any]:
        return {**profile_values("quick", table), **profile_values(profile, table), **overrides}

    def synth(name: str, clips: int, seconds: float) -> None:
        synth_seconds[name] = clips * seconds
        disk[f"synthetic scenes: {name}"] = clips * seconds * SYNTH_BYTES_PER_SECOND

    def family(fam, key: str) -> None:
        sr, size = fam.audio_sr, fam.image_size
        win = fam.train_audio_seconds * sr
        disk[f"RCGrad family windows {key}"] = (fam.train_windows + fam.val_windows) * _window_row(size, win, False)
        disk[f"RCGrad family validation pairs {key}"] = (fam.val_scenes * fam.scene_seconds * PAIRS_PER_CLIP_SECOND
                                                         * _eval_row(size, sr, False))
        frames = fam.train_scenes * fam.scene_seconds / 0.5
        if fam.prior_epochs > 0:
            memory.append(frames * size * size * 3)
            train[f"rcgrad-prior {key}"] = fam.prior_epochs * frames * _cost(size, fam.width, 0)
        n = fam.train_windows
        train[f"rcgrad {key}"] = fam.epochs * n * _cost(size, fam.width, win)
        train[f"flowgrad_ic {key}"] = fam.finetune_epochs * n * _cost(size, fam.width, win)
        train[f"flowgrad_en {key}"] = fam.finetune_epochs * n * _cost(size, fam.width, win, images=2)
        batch_memory.append(1.5 * fam.batch_size * ACTIVATION_BYTES_PER_PAIR * fam.width * (size / 224) ** 2)
        disk[f"RCGrad family models {key}"] = 8 * ENCODER_BYTES * fam.width ** 2  # prior 1, RCGrad 2, IC 2, EN 3

    for nb in notebooks:
        v = values(nb) if nb in ("02_flowgrad", "03_ablations", "04_do_we_need_sound") else {}
        if nb in ("00_data_tour", "01_dataset_bias", "05_explorer") or v:
            all_values = values(nb) if v else {**profile_values("quick", nb), **profile_values(profile, nb), **overrides}
            synth("evaluation set", int(all_values.get("synth_clips", 160)), 10.0)
        if nb == "02_flowgrad":
            fam = flowgrad.FlowGradSetup.for_profile(profile, overrides)
            synth("training scenes", fam.train_scenes, fam.scene_seconds)
            family(fam, f"({fam.image_size} px, {fam.train_windows} windows)")
            sr = flowgrad.RELEASED_AUDIO_SR if fam.protocol == "released" else fam.audio_sr
            disk[f"RCGrad family evaluation pairs ({fam.image_size} px, {fam.eval_clips} clips)"] = (
                fam.eval_clips * 10 * PAIRS_PER_CLIP_SECOND * _eval_row(fam.image_size, sr, False))
        elif nb == "03_ablations":
            htf = hear_the_flow.HearTheFlowSetup.for_profile(profile, overrides)
            motion = flowgrad_motion.MotionSetup.for_profile(profile, overrides)
            fam = flowgrad.FlowGradSetup.for_profile(profile, overrides)
            synth("training scenes", htf.train_scenes, htf.scene_seconds)
            family(fam, f"({fam.image_size} px, {fam.train_windows} windows)")
            size, sr, sec = htf.image_size, htf.audio_sr, htf.audio_seconds
            disk[f"Hear The Flow windows ({htf.protocol})"] = (htf.train_windows + htf.val_windows) * _window_row(
                size, sec * sr, True)
            disk[f"Hear The Flow evaluation and validation pairs ({htf.protocol})"] = (
                (htf.eval_clips * 10 + htf.val_scenes * htf.scene_seconds) * PAIRS_PER_CLIP_SECOND
                * _eval_row(size, htf.eval_audio_seconds * sr, True))
            frames = htf.train_scenes * htf.scene_seconds / 0.5
            memory.append(frames * size * size * 3)
            train["htf-prior"] = htf.prior_epochs * frames * _cost(size, htf.width, 0)
            per = _cost(size, htf.width, sec * sr * 16000 / sr, images=2)
            train["htf-a..f, maxpool"] = 7 * htf.epochs * htf.train_windows * per
            batch_memory.append(2 * htf.batch_size * ACTIVATION_BYTES_PER_PAIR * htf.width ** 2 * (size / 224) ** 2)
            disk["Hear The Flow models"] = 22 * ENCODER_BYTES * htf.width ** 2  # prior, 7 models of 2-3 encoders
            synth("idling scenes", 2 * motion.idle_clips, 10.0)
            synth("camera shake scenes", len(motion.shake_amplitudes) * motion.shake_clips, 10.0)
            n_pairs = (2 * len(motion.context_windows) * motion.idle_clips
                       + 2 * len(motion.shake_amplitudes) * motion.shake_clips) * 10 * PAIRS_PER_CLIP_SECOND
            disk["flow-window and camera-shake evaluation pairs"] = n_pairs * _eval_row(fam.image_size, fam.audio_sr, False)
        elif nb == "04_do_we_need_sound":
            oya = do_we_need_sound.OyaSetup.for_profile(profile, overrides)
            fam = do_we_need_sound.data_setup(oya, do_we_need_sound.rcgrad_setup(profile, oya, overrides))
            synth("training scenes", fam.train_scenes, fam.scene_seconds)
            family(fam, f"({fam.image_size} px, {fam.train_windows} windows)")
            disk[f"RCGrad family evaluation pairs ({fam.image_size} px, {oya.eval_clips} clips)"] = (
                oya.eval_clips * 10 * PAIRS_PER_CLIP_SECOND * _eval_row(fam.image_size, fam.audio_sr, False))
            synth("Type A/B scenes", oya.ab_clips, 10.0)
            disk["Type A/B evaluation pairs"] = oya.ab_clips * 10 * PAIRS_PER_CLIP_SECOND * _eval_row(
                fam.image_size, fam.audio_sr, False)
            frames = fam.train_scenes * fam.scene_seconds / 0.5
            if oya.prior_epochs > 0:
                memory.append(frames * oya.image_size ** 2 * 3)
            vgg = 0.3 * _cost(oya.image_size, oya.width, fam.train_audio_seconds * oya.audio_sr)
            train["oya"] = sum(oya.epochs * n * vgg for n in oya.train_sizes)
            batch_memory.append(oya.batch_size * ACTIVATION_BYTES_PER_PAIR * oya.width ** 2 * (oya.image_size / 224) ** 2)
    cpu_s = sum(train.values())
    gb = 1e9
    return {"disk_gb": sum(disk.values()) / gb, "items": {k: v / gb for k, v in disk.items()},
            "memory_gb": (max(memory) if memory else 0.0) / gb + 2.0,
            "batch_memory_gb": max(batch_memory) / gb,
            "cpu_hours": cpu_s / 3600, "gpu_hours": cpu_s / GPU_SPEEDUP / 3600,
            "data_hours": sum(synth_seconds.values()) * SYNTH_CORE_SECONDS_PER_SECOND / 2 / 3600}


def needs_text(needs: Mapping[str, Any]) -> str:
    """:func:`profile_needs` as the lines ``regenerate`` prints before it starts."""
    lines = [f"  disk: about {needs['disk_gb']:.0f} GB under the data folder (caches kept for later runs):"]
    lines += [f"    {gb:7.1f} GB  {what}" for what, gb in sorted(needs["items"].items(), key=lambda kv: -kv[1])
              if gb >= 0.05]
    lines.append(f"  memory: about {needs['memory_gb']:.0f} GB of RAM (the object prior's frames are held in memory), "
                 f"and about {needs['batch_memory_gb']:.0f} GB for a training batch (GPU memory on a GPU)")
    lines.append(f"  time: synthetic scenes about {needs['data_hours']:.1f} h on 2 cores (the cached arrays about as "
                 "long again); training at most "
                 f"{needs['cpu_hours']:.0f} h on 2 CPU cores, about {needs['gpu_hours']:.1f} h on one GPU "
                 "(every model at its epoch maximum; early stopping usually ends sooner)")
    return "\n".join(lines)
