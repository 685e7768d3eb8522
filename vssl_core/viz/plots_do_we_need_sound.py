"""Plots of the "Do We Need Sound?" notebook (matplotlib only; never saves).

Tables come from :mod:`vssl_core.studies.do_we_need_sound`; every bar carries its 95% bootstrap interval.
Saving goes through :func:`vssl_core.repro.outputs.save_figure`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from vssl_core.viz.plotting import colour

__all__ = ["grouped_bars", "side_accuracy_bars"]


def grouped_bars(ax: Axes, table: pd.DataFrame, group: str, series: str, metric: str,
                 series_order: Sequence[str] | None = None, paper: str | None = None) -> Axes:
    """Bars of ``metric`` grouped by ``group`` (x axis), one colour per ``series``, with the
    ``<metric>_lo`` / ``<metric>_hi`` interval as error bars and, when ``paper`` names a column,
    the paper's value as a black tick on each bar.

    Parameters
    ----------
    ax : Axes
    table : DataFrame
        Long format: one row per (group, series).
    group, series, metric : str
        Column names.
    series_order : sequence of str, optional
        Series to draw, in order (default: order of appearance).
    paper : str, optional
        Column with the paper's value (NaN: no tick).
    """
    groups = list(dict.fromkeys(table[group].tolist()))
    names = list(series_order) if series_order is not None else list(dict.fromkeys(table[series]))
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        sub = table[table[series] == name].set_index(group)
        xs, ys, lo, hi, ticks = [], [], [], [], []
        for g_i, g in enumerate(groups):
            if g not in sub.index:
                continue
            row = sub.loc[g]
            xs.append(g_i - 0.4 + width * (k + 0.5))
            ys.append(float(row[metric]))
            lo.append(float(row[metric]) - float(row[f"{metric}_lo"]))
            hi.append(float(row[f"{metric}_hi"]) - float(row[metric]))
            ticks.append(float(row[paper]) if paper else np.nan)
        yerr = np.nan_to_num(np.array([lo, hi], dtype=float).reshape(2, -1))
        ax.bar(xs, ys, width=width * 0.92, color=colour(k), label=str(name),
               yerr=yerr, capsize=2, error_kw={"lw": 0.8})
        for x, t in zip(xs, ticks):
            if np.isfinite(t):
                ax.plot([x - width * 0.4, x + width * 0.4], [t, t], color="black", lw=1.5)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([str(g) for g in groups])
    ax.set_xlabel(group)
    ax.set_ylabel(metric)
    ax.legend(frameon=False, fontsize=7)
    return ax


def side_accuracy_bars(ax: Axes, names: Sequence[str], accuracy: Sequence[float],
                       references: Mapping[str, float] | None = None) -> Axes:
    """Concat-and-localize side accuracy per method, with the 0.5 line of a sound-blind map and,
    given ``references`` (name -> side accuracy, e.g. the perfect listeners), one grey line each."""
    y = np.arange(len(names))
    ax.barh(y, accuracy, color=[colour(i) for i in range(len(names))])
    ax.axvline(0.5, color="black", lw=0.8, ls="--", label="sound-blind map")
    for (name, value), style in zip((references or {}).items(), (":", "-.", (0, (5, 1)), (0, (1, 3)))):
        ax.axvline(value, color="0.4", lw=1.2, ls=style, label=f"{name}: {value:.3f}")
    ax.set_yticks(y)
    ax.set_yticklabels(list(names))
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("side accuracy (mass on the sounding half)")
    if references:
        ax.legend(frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    return ax
