"""vssl_core: the package behind the vssl-companion notebooks.

One import line serves every notebook::

    import vssl_core as vc

The layers, each a sub-package, from the bottom up (a layer uses only those below it):

- ``data``: Urbansas (real and synthetic, one loader), VGG-SS and Flickr-SoundNet annotations,
  optical flow, cached evaluation and training arrays, concat-and-localize;
- ``eval``: metrics (cIoU, AUC), bootstrap intervals, scoring of maps, claims, sample types,
  box statistics;
- ``models``: each model family with its map function and weight loading, and the baselines;
- ``training``: the training loop, its objectives, and the cache of trained models;
- ``studies``: one module per paper, all of the same shape (they never import each other);
- ``viz``: plots, the data tour and the interactive explorer;
- ``repro``: paths, caches, atomic writes, memory, profiles, output files, regeneration.

Sub-packages and their modules are imported lazily (``vc.eval.metrics`` imports on first use), so
``import vssl_core`` stays fast and light (no torch until a model is used).
"""
from __future__ import annotations

from vssl_core._lazy import lazy_modules

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_modules(__name__, __path__)
