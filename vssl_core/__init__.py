"""vssl_core: the package behind the vssl-companion notebooks.

One import line serves every notebook::

    import vssl_core as vc

The layers, each a sub-package, from the bottom up (a layer imports only those below it;
``tests/test_layout.py`` checks it):

- ``repro``: paths, caches, atomic writes, memory, profiles, output files, regeneration;
- ``eval``: metrics (cIoU, AUC, ground-truth maps), bootstrap intervals, the map container,
  scoring, claims, findings, sample types, box statistics;
- ``data``: Urbansas (real and synthetic, one loader), VGG-SS and Flickr-SoundNet annotations,
  optical flow, cached evaluation and training arrays, training scenes, concat-and-localize;
- ``models``: each model family beside its map function, weight loading, the baselines;
- ``training``: the training loop and its objectives, trained models (store, shipped weights);
- ``studies``: one module per paper, all of the same shape (a study imports no other paper's);
- ``viz``: plots, the data tour, the interactive explorer;
- ``cli``: ``python -m vssl_core COMMAND``.

Sub-packages and their modules are imported lazily (``vc.eval.metrics`` imports on first use), so
``import vssl_core`` stays fast and light (no torch until a model is used).
"""
from __future__ import annotations

from vssl_core._lazy import lazy_modules

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_modules(__name__, __path__)
