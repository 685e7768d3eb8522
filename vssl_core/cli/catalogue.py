"""Every trainable model the notebooks use, under one profile: the input of ``python -m vssl_core train``.

This is the one place that knows which study trains which models; it lives with the command line,
the only layer above the studies. Names are unique across studies:
``rcgrad-prior``, ``rcgrad``, ``flowgrad_ic``, ``flowgrad_en`` (notebook 02, reused by 03-05),
``htf-prior``, ``htf-a`` .. ``htf-f``, ``htf-maxpool`` (notebook 03), ``oya-prior``,
``oya-<size>`` (notebook 04).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vssl_core.training.store import Models, ModelSpec

__all__ = ["all_specs"]


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
