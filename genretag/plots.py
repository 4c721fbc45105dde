"""Pictures and summaries of predictions: a track's timeline, a library's overview.

Two things live here:

* :func:`plot_timeline` draws one :class:`~genretag.result.TrackPrediction`'s slice
  probabilities over time; :func:`plot_paths` names the images when several files are drawn.
* :func:`library_overview` summarises many predictions (and the genres a user set) into an
  :class:`Overview`, which :func:`format_overview` prints and :func:`plot_overview` draws.

Everything but the two ``plot_*`` drawing functions is pure Python. matplotlib is imported
inside those two functions, with the Agg canvas and no pyplot, so importing this module is
cheap and nothing leaks between calls (no global figure, no changed ``rcParams``).

Colours: a class keeps one colour in every picture. The ten GTZAN genres have fixed colours;
other names get colours by their position in the sorted list of the non-GTZAN names of the
vocabulary, so two pictures of the same vocabulary agree.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .genre_names import fold_genre

if TYPE_CHECKING:
    from .result import TrackPrediction

#: Fixed colours of the GTZAN genres (matplotlib's tab10, in the shipped model's order).
GTZAN_COLOURS = {
    "blues": "#1f77b4", "classical": "#ff7f0e", "country": "#2ca02c", "disco": "#d62728",
    "hiphop": "#9467bd", "jazz": "#8c564b", "metal": "#e377c2", "pop": "#7f7f7f",
    "reggae": "#bcbd22", "rock": "#17becf",
}
#: Colours for names outside GTZAN, handed out in sorted-name order: strong ones first, then
#: lighter ones (from tab20, tab20b and tab20c; none is a GTZAN colour).
_EXTRA_COLOURS = (
    "#393b79", "#e6550d", "#637939", "#843c39", "#7b4173", "#3182bd", "#8c6d31", "#31a354",
    "#756bb1", "#636363", "#6b6ecf", "#fd8d3c", "#8ca252", "#d6616b", "#a55194", "#6baed6",
    "#bd9e39", "#74c476", "#9e9ac8", "#969696", "#9c9ede", "#fdae6b", "#b5cf6b", "#e7969c",
    "#ce6dbd", "#9ecae1", "#e7ba52", "#a1d99b", "#bcbddc", "#bdbdbd", "#aec7e8", "#ffbb78",
    "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#cedb9c",
    "#e7cb94", "#ad494a", "#de9ed6", "#5254a3",
)
OTHER_COLOUR = "#d9d9d9"

#: Timelines with more slices than this are drawn with neighbouring slices averaged in
#: groups, so each drawn step stays a few pixels wide.
MAX_DRAWN_STEPS = 250
#: Slice boundaries are drawn as lines up to this many drawn steps (more would be a grey wash).
MAX_BOUNDARY_LINES = 60
#: At most this many classes get their own colour and legend entry in a timeline.
MAX_TIMELINE_CLASSES = 8
#: At most this many classes are drawn as lines (multi-label), where more become a tangle.
MAX_TIMELINE_LINES = 6
#: Slice scores summing to 1 within this tolerance are read as one distribution (stacked).
SUM_TOLERANCE = 0.02


def genre_colours(classes: Sequence[str]) -> dict[str, str]:
    """A colour (``'#rrggbb'``) for each name in ``classes``, the same in every picture.

    GTZAN genre names have fixed colours; the other names take colours in the order of their
    sorted names, so a vocabulary always gets the same colours whatever order it comes in.
    Past 44 non-GTZAN names the colours repeat.
    """
    extra = sorted({c for c in classes if c not in GTZAN_COLOURS})
    out = {c: GTZAN_COLOURS[c] for c in classes if c in GTZAN_COLOURS}
    out.update({c: _EXTRA_COLOURS[i % len(_EXTRA_COLOURS)] for i, c in enumerate(extra)})
    return out


# --------------------------------------------------------------------------- file naming

def plot_paths(out: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Where ``genretag classify --timeline --plot OUT`` writes each input's image.

    One input: ``OUT`` itself. Several inputs: one image per input, in input order, named
    ``<OUT stem>-<input stem><OUT suffix>`` beside ``OUT``, so ``--plot plots/t.png a.mp3
    b/c.flac`` writes ``plots/t-a.png`` and ``plots/t-c.png``. When two inputs would get the
    same name (``x/song.mp3`` and ``y/song.flac``, or names differing only in case), the later
    ones get ``-2``, ``-3``, ... after the stem: ``t-song.png``, ``t-song-2.png``. Names are
    unique ignoring case, so they are distinct on case-insensitive file systems too.

    Pure: the file system is not looked at, so an existing file of the same name is
    overwritten when drawn.

    Parameters
    ----------
    out : path
        The ``--plot`` argument.
    inputs : sequence of paths
        The audio files to be drawn (after directories are walked).

    Returns
    -------
    list of Path, one per input, all different.
    """
    out = Path(out)
    if len(inputs) == 1:
        return [out]
    taken: set[str] = set()
    paths = []
    for item in inputs:
        base = f"{out.stem}-{Path(item).stem}"
        name, n = f"{base}{out.suffix}", 1
        while name.casefold() in taken:
            n += 1
            name = f"{base}-{n}{out.suffix}"
        taken.add(name.casefold())
        paths.append(out.with_name(name))
    return paths


# --------------------------------------------------------------------------- timeline

def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss`` from one hour) for a time in seconds, rounded down."""
    m, s = divmod(int(max(seconds, 0.0)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _tick_step(span_s: float) -> float:
    """A round tick spacing in seconds giving about 4 to 10 ticks over ``span_s``."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if span_s / step <= 10:
            return float(step)
    return 3600.0 * math.ceil(span_s / 36000)


def _runs(starts: list[float], ends: list[float], group: int) -> list[list[tuple[int, int]]]:
    """Slices split into contiguous runs, each run cut into groups of up to ``group`` slices.

    Returns, per run, the ``(first, stop)`` index ranges of its drawn steps.
    """
    runs, first = [], 0
    for i in range(1, len(starts) + 1):
        if i == len(starts) or starts[i] > ends[i - 1] + 1e-3 or starts[i] < starts[i - 1]:
            runs.append([(j, min(j + group, i)) for j in range(first, i, group)])
            first = i
    return runs


def plot_timeline(pred: TrackPrediction, out_path: str | os.PathLike, *,
                  classes: Sequence[str] | None = None, title: str | None = None,
                  stacked: bool | None = None, width_in: float = 10.0,
                  dpi: int = 100) -> Path:
    """Draw a track's genre probabilities over time as a PNG.

    Each analysed slice is one step: with ``stacked`` the classes' probabilities are stacked
    areas filling 0..1, otherwise each class is a step line of its score. Stretches of the
    track that were not analysed (``max_slices`` spreads slices out) stay blank. The classes
    that matter get their own colour and legend entry (with their track-level score): the
    track's genre (and, multi-label, its genres), then, by mean score, those reaching 3 % on
    average or winning at least a tenth of the slices; at most eight areas or six lines. The
    rest are one grey "other" band (stacked) or left out (lines). Slice boundaries are thin
    lines while there are at most 60 steps. With more than 250 slices, neighbouring
    contiguous slices are averaged in groups (the title says how many), which keeps a
    50-minute mix readable and quick to draw. The track's genre and confidence are in the
    title, and a dashed line marks the confidence: stacked, the genre is the bottom band and
    the line is that band's mean height. The time axis reads ``m:ss`` (``h:mm:ss`` past an
    hour).

    Multi-label vocabularies (independent scores that need not sum to 1) are drawn as lines,
    not normalised: normalising would turn "rock 0.9, guitar 0.8" into halves and hide how
    sure the model is of each tag. By default (``stacked=None``) a track is stacked unless it
    is ``multi_label`` or some slice's scores do not sum to 1 within 0.02.

    Parameters
    ----------
    pred : TrackPrediction
        Must have a timeline (at least one slice) and not be silent.
    out_path : path
        The PNG to write (always PNG, whatever the suffix; the parent directory must exist).
    classes : sequence of str, optional
        Class names in the order of each slice's ``probs``; by default the keys of
        ``pred.probs``, which are in that order.
    title : str, optional
        First line of the title; by default the file name of ``pred.path``.
    stacked : bool, optional
        Force stacked areas (True) or lines (False); see above for the default.
    width_in, dpi : float, int
        Image width in inches and resolution in dots per inch (height is 0.45 of the
        width): the defaults give a 1000 x 450 pixel image.

    Returns
    -------
    Path of the written image.

    Raises
    ------
    GenretagError
        The track is silent or has no timeline (its message names the file).
    ValueError
        ``classes`` whose length differs from the slices' ``probs``.
    """
    import numpy as np

    from .errors import GenretagError

    timeline = pred.timeline
    if pred.silent or pred.genre is None:
        raise GenretagError(f"{pred.path}: silent, no timeline to plot")
    if not timeline:
        raise GenretagError(f"{pred.path}: no timeline to plot (classify with a timeline)")
    classes = list(pred.probs) if classes is None else list(classes)
    probs = np.asarray([s.probs for s in timeline], dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ValueError(f"{pred.path}: {len(classes)} classes but slices have "
                         f"{probs.shape[-1] if probs.ndim == 2 else 'ragged'} scores")
    starts = [float(s.start_s) for s in timeline]
    ends = [float(s.end_s) for s in timeline]
    if stacked is None:
        stacked = not pred.multi_label and bool(
            np.all(np.abs(probs.sum(axis=1) - 1.0) <= SUM_TOLERANCE))

    shown = _timeline_classes(pred.genre, classes, probs, first=pred.genres,
                              limit=MAX_TIMELINE_CLASSES if stacked else MAX_TIMELINE_LINES)
    index = [classes.index(c) for c in shown]
    colours = genre_colours(classes)
    group = max(1, math.ceil(len(timeline) / MAX_DRAWN_STEPS))
    runs = _runs(starts, ends, group)
    n_steps = sum(len(r) for r in runs)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    fig = Figure(figsize=(width_in, width_in * 0.45), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for run in runs:
        edges = np.asarray([starts[a] for a, _ in run] + [ends[run[-1][1] - 1]])
        values = np.stack([probs[a:b].mean(axis=0) for a, b in run])  # [steps, classes]
        x = np.repeat(edges, 2)[1:-1]
        if stacked:
            bottom = np.zeros(len(run))
            layers = [(c, values[:, i]) for c, i in zip(shown, index)]
            rest = values.sum(axis=1) - sum(v for _, v in layers)
            layers.append(("other", np.clip(rest, 0.0, None)))
            for name, v in layers:
                top = bottom + v
                ax.fill_between(x, np.repeat(bottom, 2), np.repeat(top, 2), linewidth=0,
                                color=colours.get(name, OTHER_COLOUR))
                bottom = top
            if n_steps <= MAX_BOUNDARY_LINES:
                ax.vlines(edges, 0, 1, colors="white", linewidth=0.8)
        else:
            for c, i in zip(shown, index):
                ax.plot(x, np.repeat(values[:, i], 2), color=colours[c], linewidth=1.6)
            if n_steps <= MAX_BOUNDARY_LINES:
                ax.vlines(edges, 0, 1, colors="#cccccc", linewidth=0.6, zorder=0)

    ax.axhline(pred.confidence, color="black", linestyle="--", linewidth=1.0)
    lo, hi = min(starts), max(ends)
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, 1 if stacked else max(1.0, float(probs.max())))
    step = _tick_step(hi - lo)
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda t, _: clock(t)))
    ax.set_xlabel("time (m:ss)")
    ax.set_ylabel("probability (stacked)" if stacked else "score per class")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=colours[c], label=f"{c} {pred.probs.get(c, 0.0):.2f}") if stacked
               else Line2D([], [], color=colours[c], linewidth=1.6,
                           label=f"{c} {pred.probs.get(c, 0.0):.2f}")
               for c in shown]
    if stacked and len(shown) < len(classes):
        handles.append(Patch(color=OTHER_COLOUR, label=f"other ({len(classes) - len(shown)})"))
    elif len(shown) < len(classes):
        handles.append(Line2D([], [], linestyle="none",
                              label=f"({len(classes) - len(shown)} more not drawn)"))
    handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1.0,
                          label=f"track: {pred.genre}"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.06, 1.0), frameon=False,
              fontsize=9, title="mean prob." if stacked else "mean score",
              title_fontsize=9, alignment="left")

    name = title if title is not None else os.path.basename(pred.path) or pred.path
    detail = (f"{len(timeline)} slice{'s' if len(timeline) != 1 else ''} of "
              f"{ends[0] - starts[0]:.0f} s")
    if len(runs) > 1:
        detail += f" spread over {clock(hi)}"
    if group > 1:
        detail += f", each step the mean of {group}"
    if pred.padded:
        detail += ", padded (shorter than one slice)"
    verdict = f"{pred.genre} ({pred.confidence:.2f})"
    if pred.multi_label:
        verdict = f"genres: {', '.join(pred.genres) or 'none above threshold'}; best {verdict}"
    ax.set_title(f"{name}\n{verdict}  -  {detail}", fontsize=10, loc="left")

    out_path = Path(out_path)
    fig.savefig(out_path, format="png", dpi=dpi)
    return out_path


def _timeline_classes(genre: str, classes: list[str], probs, *, first: Sequence[str] = (),
                      limit: int) -> list[str]:
    """The classes a timeline shows by name, most probable on average first.

    ``probs`` is ``[slices, classes]``. Always ``genre`` and the names in ``first`` (the
    multi-label genres), then classes reaching 3 % on average or winning at least a tenth of
    the slices, by mean score; at most ``limit``.
    """
    import numpy as np

    mean = probs.mean(axis=0)
    wins = np.bincount(probs.argmax(axis=1), minlength=len(classes)) / len(probs)
    order = [int(i) for i in np.argsort(-mean, kind="stable")]
    must = [classes.index(c) for c in (genre, *first) if c in classes]
    picked = list(dict.fromkeys(must + [i for i in order if mean[i] >= 0.03 or wins[i] >= 0.1]))
    picked = picked[:limit] or order[:1]
    return [classes[i] for i in sorted(picked, key=lambda i: -mean[i])]


# --------------------------------------------------------------------------- overview

#: The confidence histogram's bin edges: ten bins of 0.1 from 0 to 1 (1.0 falls in the last).
CONFIDENCE_EDGES = tuple(round(i / 10, 1) for i in range(11))
#: The label of the merged row or column when an agreement table is cut down.
OTHER = "(other)"


@dataclass(frozen=True)
class Doubt:
    """A row whose user-set genres disagree with a confident prediction.

    ``index`` is the row's position in the rows given to :func:`library_overview`;
    ``user_genres`` are folded (lower case, stripped).
    """

    index: int
    genre: str
    confidence: float
    user_genres: tuple[str, ...]


@dataclass(frozen=True)
class Overview:
    """What a library's predictions look like (see :func:`library_overview`).

    Attributes
    ----------
    n_rows : int
        Rows given.
    n_predicted : int
        Rows with a predicted genre (the rest have ``None`` and count nowhere else).
    distribution : dict[str, int]
        Predicted genre -> rows, most frequent first (ties by name); with ``classes`` given,
        every class is present, zero or not.
    confidence_counts : tuple of 10 int
        Rows per confidence bin ``[0, 0.1), [0.1, 0.2), ..., [0.9, 1.0]``
        (edges in :data:`CONFIDENCE_EDGES`).
    agreement : dict[str, dict[str, int]]
        User genre (folded) -> predicted genre -> rows, for rows with user-set genres. Each
        row counts once: under the user genre equal to the prediction if there is one
        (so agreements are on the diagonal), else under its first user genre.
    n_with_user_genres, n_agree : int
        Predicted rows with user-set genres, and those among them whose genres include the
        predicted one.
    doubtful : tuple of Doubt
        Rows with user-set genres none of which is the prediction, predicted with at least
        ``threshold`` confidence; most confident first (ties by row order).
    threshold : float
        The confidence from which a disagreement is doubtful.
    classes : tuple of str
        The model's vocabulary when it was given to :func:`library_overview`, else empty.
    """

    n_rows: int
    n_predicted: int
    distribution: dict[str, int]
    confidence_counts: tuple[int, ...]
    agreement: dict[str, dict[str, int]]
    n_with_user_genres: int
    n_agree: int
    doubtful: tuple[Doubt, ...]
    threshold: float
    classes: tuple[str, ...] = ()

    def unknown(self, user_genre: str) -> bool:
        """Whether a (folded) user genre is outside the model's vocabulary, so it can never
        agree; False when the vocabulary is not known."""
        return bool(self.classes) and user_genre != OTHER and user_genre not in self.classes

    @property
    def agreement_rate(self) -> float | None:
        """Share of rows with user-set genres that agree, or None when there are none."""
        return self.n_agree / self.n_with_user_genres if self.n_with_user_genres else None

    def agreement_table(self, *, max_rows: int = 12, max_cols: int = 12
                        ) -> tuple[list[str], list[str], list[list[int]]]:
        """The agreement counts cut down to a small table.

        Columns are the predicted genres that occur in the table, most frequent first;
        rows are the user genres, those also predicted first in column order, then the rest
        most frequent first. Past ``max_rows`` rows (``max_cols`` columns) the least frequent
        are merged into one last row (column) named :data:`OTHER`.

        Returns
        -------
        (row labels, column labels, counts [rows][columns])
        """
        if max_rows < 2 or max_cols < 2:
            raise ValueError(f"max_rows and max_cols must be at least 2, got "
                             f"{max_rows} and {max_cols}")
        col_total: Counter[str] = Counter()
        row_total: Counter[str] = Counter()
        for user, preds in self.agreement.items():
            for g, n in preds.items():
                col_total[g] += n
                row_total[user] += n
        cols = sorted(col_total, key=lambda g: (-col_total[g], g))
        if len(cols) > max_cols:
            cols = cols[:max_cols - 1] + [OTHER]
        rank = {g: i for i, g in enumerate(cols)}
        rows = sorted(row_total, key=lambda u: (rank.get(u, len(cols)), -row_total[u], u))
        if len(rows) > max_rows:
            rows = rows[:max_rows - 1] + [OTHER]
        row_of = {u: (u if u in rows else OTHER) for u in row_total}
        col_of = {g: (g if g in cols else OTHER) for g in col_total}
        counts = [[0] * len(cols) for _ in rows]
        r_index = {u: i for i, u in enumerate(rows)}
        c_index = {g: i for i, g in enumerate(cols)}
        for user, preds in self.agreement.items():
            for g, n in preds.items():
                counts[r_index[row_of[user]]][c_index[col_of[g]]] += n
        return rows, cols, counts


Row = tuple  # (str | None, float | None, Sequence[str] | None[, Sequence[str]])
"""One item for :func:`library_overview`: ``(predicted genre or None, its confidence in
[0, 1] or None, genres the user or another tool set, or None/empty when there are none)``,
optionally followed by the genres the prediction lists (a multi-label vocabulary's tags
over its cut): a user genre among those agrees too."""


def library_overview(rows: Iterable[Row], *, classes: Sequence[str] | None = None,
                     threshold: float = 0.7,
                     aliases: Mapping[str, str] | None = None) -> Overview:
    """Summarise predictions and user-set genres: distribution, confidence, agreement, doubts.

    A row's user genres agree when one of them (mapped through ``aliases``) is the
    predicted genre or one the row lists, names compared folded
    (:func:`genretag.genre_names.fold_genre`: ``Hip Hop`` is ``hiphop``, ``classical`` a
    personal model's ``Classical``). A user genre is shown as the class it names, else in
    lower case. A disagreeing row predicted with a confidence of at least ``threshold`` is
    doubtful: its tags are the ones worth checking by hand.

    Parameters
    ----------
    rows : iterable of (genre, confidence, user genres)
        See :data:`Row`. Rows whose genre is None (not analysed, silent) are counted in
        ``n_rows`` only.
    classes : sequence of str, optional
        The model's vocabulary, so that genres never predicted show as zero.
    threshold : float
        Confidence in [0, 1] from which a disagreement is doubtful.
    aliases : mapping, optional
        Folded user genre -> class name, e.g. ``{"hip-hop": "hiphop"}``; keys are folded too.

    Raises
    ------
    ValueError
        A confidence outside [0, 1] (naming the row) or a threshold outside [0, 1].
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be within [0, 1], got {threshold!r}")
    rows = list(rows)
    # A user genre naming a class (of the vocabulary, or predicted here) is shown as that
    # class; an alias naming no class of the vocabulary (the genre head's display names
    # under a personal model) is left out.
    alias = {fold_genre(c): c for c in (*(classes or ()), *(r[0] for r in rows if r[0]))}
    alias.update({fold_genre(k): v for k, v in (aliases or {}).items()
                  if not classes or v in classes})

    def as_class(user_genre: str) -> str:
        return alias.get(fold_genre(user_genre), user_genre.strip().casefold())

    distribution: Counter[str] = Counter({c: 0 for c in classes or ()})
    bins = [0] * 10
    agreement: dict[str, Counter[str]] = {}
    doubts = []
    n_rows = n_predicted = n_user = n_agree = 0
    for index, row in enumerate(rows):
        genre, confidence, user = row[:3]
        listed = row[3] if len(row) > 3 else ()
        n_rows += 1
        if genre is None:
            continue
        if confidence is None or not 0.0 <= confidence <= 1.0:  # also catches NaN
            raise ValueError(f"row {index} ({genre}): confidence must be within [0, 1], "
                             f"got {confidence!r}")
        n_predicted += 1
        distribution[genre] += 1
        bins[min(int(confidence * 10), 9)] += 1
        folded = tuple(dict.fromkeys(as_class(u) for u in user or () if u and fold_genre(u)))
        if not folded:
            continue
        n_user += 1
        agrees = bool({fold_genre(u) for u in folded}
                      & {fold_genre(as_class(g)) for g in (genre, *listed)})
        n_agree += agrees
        agreement.setdefault(genre if agrees else folded[0], Counter())[genre] += 1
        if not agrees and confidence >= threshold:
            doubts.append(Doubt(index, genre, float(confidence), folded))
    doubts.sort(key=lambda d: (-d.confidence, d.index))
    return Overview(
        n_rows=n_rows, n_predicted=n_predicted,
        distribution=dict(sorted(distribution.items(), key=lambda kv: (-kv[1], kv[0]))),
        confidence_counts=tuple(bins),
        agreement={u: dict(c) for u, c in sorted(agreement.items())},
        n_with_user_genres=n_user, n_agree=n_agree, doubtful=tuple(doubts),
        threshold=threshold, classes=tuple(classes or ()))


def format_overview(overview: Overview, *, labels: Sequence[str] | None = None,
                    max_doubtful: int = 20, bar_width: int = 30) -> str:
    """The overview as plain ASCII text for a terminal (80 columns, but for the labels).

    Sections: predicted genres (count, share, bar), confidence histogram, the agreement
    table (user genres as rows, predictions as columns, cut down as in
    :meth:`Overview.agreement_table`, zeros shown as ``.``, user genres outside the model's
    vocabulary marked ``*``) and the doubtful rows. ``labels``, parallel to the rows given
    to :func:`library_overview`, names the doubtful ones (e.g. ``artist - title``); without
    it they are named by row number. At most ``max_doubtful`` doubtful rows are listed, then
    how many more there are.
    """
    n = overview.n_predicted
    skipped = overview.n_rows - n
    lines = [f"{n} item{'s' if n != 1 else ''} with a predicted genre"
             + (f" ({skipped} without)" if skipped else "")]
    if not n:
        return lines[0]

    def bar(count: int, most: int) -> str:
        return "#" * (round(bar_width * count / most) if most else 0)

    lines += ["", "Predicted genres"]
    width = max(len(g) for g in overview.distribution)
    most = max(overview.distribution.values())
    for g, c in overview.distribution.items():
        lines.append(f"  {g:<{width}}  {c:>5}  {100 * c / n:5.1f}%  {bar(c, most)}")

    lines += ["", "Confidence"]
    most = max(overview.confidence_counts)
    for i, c in enumerate(overview.confidence_counts):
        lo, hi = CONFIDENCE_EDGES[i], CONFIDENCE_EDGES[i + 1]
        lines.append(f"  {lo:.1f}-{hi:.1f}  {c:>5}  {bar(c, most)}".rstrip())

    lines.append("")
    if not overview.n_with_user_genres:
        lines.append("Agreement with user-set genres: no item has genres set")
    else:
        lines.append(f"Agreement with user-set genres: {overview.n_agree} of "
                     f"{overview.n_with_user_genres} agree ({100 * overview.agreement_rate:.0f}%)")
        lines.append("  (rows: user-set genre, columns: predicted genre)")
        rows, cols, counts = overview.agreement_table(max_cols=10)
        heads = _short_names(cols, 5)
        cw = max([len(h) for h in heads] + [len(str(v)) for r in counts for v in r])
        rw = min(max(len(r) + overview.unknown(r) for r in rows), 14)
        lines.append(f"  {'':<{rw}}" + "".join(f" {h:>{cw}}" for h in heads))
        for r, values in zip(rows, counts):
            cells = "".join(f" {str(v) if v else '.':>{cw}}" for v in values)
            mark = "*" if overview.unknown(r) else ""
            lines.append(f"  {r[:rw - len(mark)] + mark:<{rw}}{cells}")
        if any(overview.unknown(r) for r in rows):
            lines.append("  * not a genre the model knows: it can never agree")

    lines += ["", f"Doubtful: user-set genres disagree with a prediction of confidence "
                  f">= {overview.threshold:.2f}: {len(overview.doubtful)}"]
    for d in overview.doubtful[:max_doubtful]:
        name = labels[d.index] if labels is not None else f"row {d.index}"
        lines.append(f"  {d.confidence:.2f}  {d.genre:<{width}}  user: "
                     f"{', '.join(d.user_genres):<20}  {name}")
    if len(overview.doubtful) > max_doubtful:
        lines.append(f"  ... and {len(overview.doubtful) - max_doubtful} more")
    return "\n".join(lines)


def _short_names(names: list[str], width: int) -> list[str]:
    """Names cut to ``width`` characters, unless that would make two of them equal."""
    short = [n[:width] for n in names]
    return short if len(set(short)) == len(short) else list(names)


def plot_overview(overview: Overview, out_path: str | os.PathLike, *, dpi: int = 100,
                  title: str | None = None) -> Path:
    """Draw the overview as one PNG of 1200 x 900 pixels at the default ``dpi``.

    Top left, the predicted genres as horizontal bars (the genres' colours, count and share
    at each bar); top right, the confidence histogram (bins of 0.1, the doubtful threshold
    marked); bottom, the agreement table of :meth:`Overview.agreement_table` as a heat map
    with the count in each cell, agreements (the diagonal) outlined and user genres outside
    the model's vocabulary marked ``*``. Panels without data
    say so instead of staying blank. The PNG is written whatever the suffix of ``out_path``.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 9), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 1.25))
    ax_dist, ax_conf = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    ax_agree = fig.add_subplot(grid[1, :])
    n = overview.n_predicted
    fig.suptitle(title or f"Library overview: {n} item{'s' if n != 1 else ''} with a "
                 f"predicted genre", fontsize=13)

    def empty(ax, text):
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
                fontsize=11, color="#555555")
        ax.set_xticks([])
        ax.set_yticks([])

    # predicted genres
    ax_dist.set_title("Predicted genres", loc="left", fontsize=11)
    dist = [(g, c) for g, c in overview.distribution.items()]
    if len(dist) > 30:
        dist = dist[:29] + [("(other)", sum(c for _, c in dist[29:]))]
    if n:
        names = [g for g, _ in dist]
        colours = genre_colours([g for g in overview.distribution])
        y = np.arange(len(dist))
        counts = [c for _, c in dist]
        ax_dist.barh(y, counts, color=[colours.get(g, OTHER_COLOUR) for g in names])
        ax_dist.set_yticks(y, names, fontsize=9 if len(dist) <= 15 else 7)
        ax_dist.invert_yaxis()
        top = max(counts)
        for yi, c in zip(y, counts):
            ax_dist.text(c + top * 0.01, yi, f"{c} ({100 * c / n:.0f}%)", va="center",
                         fontsize=8)
        ax_dist.set_xlim(0, top * 1.2)
        ax_dist.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_dist.set_xlabel("items")
    else:
        empty(ax_dist, "no predictions")

    # confidence histogram
    ax_conf.set_title("Confidence of the predicted genre", loc="left", fontsize=11)
    if n:
        edges = np.asarray(CONFIDENCE_EDGES)
        bars = ax_conf.bar(edges[:-1], overview.confidence_counts, width=0.1, align="edge",
                           color="#4c72b0", edgecolor="white")
        ax_conf.bar_label(bars, labels=[str(c) if c else "" for c in overview.confidence_counts],
                          fontsize=8, padding=2)
        ax_conf.axvline(overview.threshold, color="#c44e52", linestyle="--", linewidth=1.2,
                        label=f"doubtful from {overview.threshold:.2f}")
        ax_conf.legend(loc="upper left", frameon=False, fontsize=9)
        ax_conf.set_ylim(0, max(overview.confidence_counts) * 1.25)
        ax_conf.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_conf.set_xlim(0, 1)
        ax_conf.set_xticks(edges)
        ax_conf.set_xlabel("confidence (bins of 0.1)")
        ax_conf.set_ylabel("items")
    else:
        empty(ax_conf, "no predictions")

    # agreement heat map
    rate = overview.agreement_rate
    ax_agree.set_title(
        "Agreement with user-set genres" + (
            f": {overview.n_agree} of {overview.n_with_user_genres} agree ({100 * rate:.0f}%),"
            f" {len(overview.doubtful)} doubtful" if rate is not None else ""),
        loc="left", fontsize=11)
    if rate is None:
        empty(ax_agree, "no item has user-set genres")
    else:
        rows, cols, counts = overview.agreement_table()
        m = np.asarray(counts, dtype=float)
        ax_agree.imshow(m, cmap="Blues", aspect="auto", vmin=0, vmax=max(m.max(), 1))
        ax_agree.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=9)
        ax_agree.set_yticks(range(len(rows)),
                            [f"{r} *" if overview.unknown(r) else r for r in rows], fontsize=9)
        if any(overview.unknown(r) for r in rows):
            ax_agree.text(1.0, -0.12, "* not a genre the model knows: it can never agree",
                          transform=ax_agree.transAxes, ha="right", va="top", fontsize=8)
        ax_agree.set_xlabel("predicted genre")
        ax_agree.set_ylabel("user-set genre")
        for i, j in zip(*np.nonzero(m)):
            v = m[i, j]
            ax_agree.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=9,
                          color="white" if v > 0.6 * m.max() else "black")
        from matplotlib.patches import Rectangle

        for i, r in enumerate(rows):
            if r in cols and r != OTHER:
                ax_agree.add_patch(Rectangle((cols.index(r) - 0.5, i - 0.5), 1, 1, fill=False,
                                             edgecolor="#2ca02c", linewidth=2))

    out_path = Path(out_path)
    fig.savefig(out_path, format="png", dpi=dpi)
    return out_path
