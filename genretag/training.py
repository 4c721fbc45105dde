"""Training the genre head: the slice-embedding cache, the fit, calibration, the model directory.

Every labelled clip is decoded once, seen in each augmentation of the recipe
(:mod:`genretag.augment`), cut into the non-overlapping slices inference uses, and
embedded by the frozen backbone. Those embeddings are cached on disk (one ``.npz`` per
collection and augmentation, plus ``manifest.json``), so fitting, the protocol and
calibration decode nothing. The head is then a weighted softmax regression on backbone
views, fitted by L-BFGS on one thread so that the same cache gives the same bytes.

:func:`train` is the library call ``genretag train`` is thin over.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .augment import AUGMENTATIONS, augment, clip_seed, kept_slices
from .collections import GENRES, Clip
from .errors import GenretagError

#: Layout of the embedding cache this code writes and reads.
CACHE_FORMAT = 1
#: Augmented variants keep about this many slices per clip (see :func:`slice_stride`).
AUGMENTED_SLICES = 5


class TrainingError(GenretagError):
    """Training cannot proceed; the message names the file or setting and the reason."""


@dataclass(frozen=True)
class Recipe:
    """Everything that defines a trained head besides the data (stored in the card).

    ``inputs`` are backbone views (:data:`genretag.backbone.VIEWS`) concatenated per
    slice; ``l2`` penalises the squared weights of the standardised inputs; every
    training clip is seen in each of ``augmentations``; classes are balanced, and
    within each class the collections, by slice weights (:func:`slice_weights`).
    """

    inputs: tuple[str, ...] = ("penultimate", "tag_logits")
    l2: float = 0.3
    augmentations: tuple[str, ...] = ("clean", "band8k", "mp3_64k", "rand")
    max_iter: int = 200
    seed: int = 0
    classes: tuple[str, ...] = GENRES
    #: Generated non-music training the reject class: seeds of each kind, seconds each.
    nonmusic_seeds: tuple[int, ...] = (0, 1, 2, 3)
    nonmusic_seconds: float = 15.0
    #: Weight pulling each class towards the backbone's own tag of the same name
    #: (:data:`TAG_PRIOR`) instead of towards zero; 0 for none.
    tag_prior: float = 3.0

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# --------------------------------------------------------------------------- cache

@dataclass
class Embeddings:
    """Per-slice backbone embeddings of ``clips`` (row ``i`` belongs to ``clips[clip[i]]``).

    ``pooled`` is ``float32 [N, 1506]``; ``clip`` indexes ``clips``; ``variant`` indexes
    :data:`~genretag.augment.AUGMENTATIONS`; ``slice`` is the slice number in the clip
    (0 = its first 3.008 s). Rows are ordered by collection, variant, clip, slice.
    """

    clips: list[Clip]
    pooled: np.ndarray
    clip: np.ndarray
    variant: np.ndarray
    slice: np.ndarray

    def rows(self, clip_mask: np.ndarray, variants: tuple[str, ...]) -> np.ndarray:
        """Row indices of the clips in ``clip_mask`` (bool per clip) in ``variants``."""
        ok = np.isin(self.variant, [AUGMENTATIONS.index(v) for v in variants])
        return np.flatnonzero(clip_mask[self.clip] & ok)


def slice_stride(n_slices: list[int]) -> int:
    """Stride of augmented slices for a collection whose clips have ``n_slices`` slices.

    ``round(median / AUGMENTED_SLICES)``, at least 1: 2 for 30-s clips, 4 for 60-s clips.
    """
    return max(1, int(round(float(np.median(n_slices)) / AUGMENTED_SLICES)))


def _manifest(clips: list[Clip], backbone_sha256: str) -> dict:
    from .features import MUSICNN_FEATURES
    from .model import sha256_file

    return {"format": CACHE_FORMAT, "backbone_sha256": backbone_sha256,
            "features": MUSICNN_FEATURES.to_dict(), "augmentations": list(AUGMENTATIONS),
            "augmented_slices": AUGMENTED_SLICES,
            "clips": [{"collection": c.collection, "path": c.relpath, "genre": c.genre,
                       "sha256": sha256_file(c.path)} for c in clips]}


def _write_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def embed_collections(clips: list[Clip], backbone, cache_dir: Path, *,
                      augmentations: tuple[str, ...] = AUGMENTATIONS,
                      log: Callable[[str], None] = print) -> Embeddings:
    """Embeddings of ``clips`` in ``augmentations``, computed once into ``cache_dir``.

    ``backbone`` is a :class:`genretag.backbone.Backbone`. The cache is used only if its
    ``manifest.json`` names the same backbone sha256, feature parameters, augmentation
    list and clips (collection, path, genre, audio sha256); otherwise it is rebuilt.
    Each ``<collection>_<augmentation>.npz`` is written atomically when complete, so an
    interrupted run resumes where it stopped.
    """
    from .audio import decode
    from .audio import consecutive_slices

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(clips, backbone.sha256)
    mpath = cache_dir / "manifest.json"
    try:
        current = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = None
    if current is None:
        if any(cache_dir.glob("*.npz")):
            raise TrainingError(f"{cache_dir}: holds embeddings but no manifest.json; "
                                "use an empty directory")
        mpath.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    elif current != manifest:
        raise TrainingError(f"{mpath}: the cache was built for other clips, backbone or "
                            "augmentations; use an empty directory")
    params = backbone.features
    collections = list(dict.fromkeys(c.collection for c in clips))
    parts = []
    for coll in collections:
        members = [i for i, c in enumerate(clips) if c.collection == coll]
        todo = [k for k in augmentations if not (cache_dir / f"{coll}_{k}.npz").is_file()]
        audio = {}
        if todo:
            log(f"  decoding {len(members)} clips of {coll}")
            audio = {i: decode(str(clips[i].path), params.sample_rate) for i in members}
            stride = slice_stride([max(1, len(a) // params.slice_samples)
                                   for a in audio.values()])
        for kind in todo:
            v = AUGMENTATIONS.index(kind)
            pooled, clip_idx, slice_idx = [], [], []
            for i in members:
                c = clips[i]
                x = augment(audio[i], params.sample_rate, kind,
                            seed=clip_seed(c.collection, c.relpath, kind))
                sl = consecutive_slices(np.ascontiguousarray(x, np.float32), params.slice_samples)
                keep = kept_slices(len(sl), kind, stride)
                pooled.append(backbone.embed(sl[keep]))
                clip_idx += [i] * len(keep)
                slice_idx += list(keep)
            _write_npz(cache_dir / f"{coll}_{kind}.npz", pooled=np.concatenate(pooled),
                       clip=np.asarray(clip_idx, np.int32),
                       variant=np.full(len(clip_idx), v, np.int16),
                       slice=np.asarray(slice_idx, np.int16))
            log(f"  embedded {coll} {kind}: {len(clip_idx)} slices")
        for kind in augmentations:
            with np.load(cache_dir / f"{coll}_{kind}.npz") as z:
                parts.append({k: z[k] for k in ("pooled", "clip", "variant", "slice")})
    return Embeddings(clips, *(np.concatenate([p[k] for p in parts])
                               for k in ("pooled", "clip", "variant", "slice")))


# --------------------------------------------------------------------------- fitting

def slice_weights(labels: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """Per-row weights, mean 1: every class weighs the same, and within a class every
    stratum (collection) present weighs the same, whatever their slice counts.

    ``labels`` and ``strata`` are ``[N]`` arrays (class index, collection name).
    """
    w = np.zeros(len(labels))
    for c in np.unique(labels):
        in_class = labels == c
        kinds = np.unique(strata[in_class])
        for k in kinds:
            cell = in_class & (strata == k)
            w[cell] = 1.0 / (cell.sum() * len(kinds))
    return w / w.mean()


def fit_softmax(x: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_outputs: int, *,
                l2: float, max_iter: int = 200, seed: int = 0,
                prior: np.ndarray | None = None):
    """``(mean, std, linear)`` of a weighted softmax regression on standardised ``x``.

    ``x [N, D]`` float32, ``labels [N]`` in ``0..n_outputs-1``, ``weights [N]``. Minimises
    the weighted mean cross-entropy plus ``l2 * |W - prior|^2`` (``prior [n_outputs, D]``,
    zero by default) with L-BFGS (strong Wolfe line search) on one thread, so the same
    inputs give the same bytes. Outputs with no training row are still fitted (their bias
    goes low).
    """
    import torch
    from torch.nn import functional as F

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        mean, std = xt.mean(0), xt.std(0).clamp_min(1e-3)
        xs = (xt - mean) / std
        y = torch.from_numpy(np.asarray(labels)).long()
        w = torch.from_numpy(np.asarray(weights, np.float32))
        linear = torch.nn.Linear(x.shape[1], n_outputs)
        target = torch.zeros_like(linear.weight) if prior is None else \
            torch.from_numpy(np.asarray(prior, np.float32))
        opt = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=max_iter, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-6)

        def closure():
            opt.zero_grad()
            loss = (F.cross_entropy(linear(xs), y, reduction="none") * w).mean() \
                + l2 * ((linear.weight - target) ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    return mean, std, linear.eval()


# --------------------------------------------------------------------------- non-music



@dataclass
class NonMusic:
    """Embeddings of generated signals: ``pooled [N, 1506]``, ``item [N]`` indexes
    ``kinds``/``seeds`` (one generated signal each)."""

    pooled: np.ndarray
    item: np.ndarray
    kinds: list[str]
    seeds: list[int]

    def rows_of_kinds(self, kinds) -> np.ndarray:
        ok = np.asarray([k in set(kinds) for k in self.kinds])
        return np.flatnonzero(ok[self.item])


def embed_nonmusic(backbone, kinds, seeds, *, seconds: float) -> NonMusic:
    """Generate every ``(kind, seed)`` with :func:`genretag.nonmusic.generate` and embed it."""
    from .audio import consecutive_slices
    from .nonmusic import SAMPLE_RATE, generate

    if backbone.features.sample_rate != SAMPLE_RATE:
        raise TrainingError(f"generated non-music is {SAMPLE_RATE} Hz, the backbone wants "
                            f"{backbone.features.sample_rate} Hz")
    pooled, item, ks, ss = [], [], [], []
    for kind in kinds:
        for seed in seeds:
            sl = consecutive_slices(generate(kind, seed, seconds), backbone.features.slice_samples)
            pooled.append(backbone.embed(sl))
            item += [len(ks)] * len(sl)
            ks.append(kind)
            ss.append(int(seed))
    return NonMusic(np.concatenate(pooled), np.asarray(item), ks, ss)


def cached_nonmusic(backbone, cache_dir: Path, kinds, seeds, name: str, *,
                    seconds: float) -> NonMusic:
    """:func:`embed_nonmusic`, stored as ``<name>.npz`` in ``cache_dir`` with its recipe."""
    path = Path(cache_dir) / f"{name}.npz"
    key = json.dumps([list(kinds), [int(s) for s in seeds], seconds, backbone.sha256])
    if path.is_file():
        with np.load(path) as z:
            if str(z["key"]) == key:
                return NonMusic(z["pooled"], z["item"], list(z["kinds"]),
                                [int(s) for s in z["seeds"]])
    nm = embed_nonmusic(backbone, kinds, seeds, seconds=seconds)
    _write_npz(path, pooled=nm.pooled, item=nm.item, kinds=np.asarray(nm.kinds),
               seeds=np.asarray(nm.seeds), key=np.asarray(key))
    return nm


# --------------------------------------------------------------------------- the head

def make_head(mean, std, linear, n_classes: int, recipe: Recipe, *, reject: bool,
              temperature: float = 1.0):
    """A :class:`~genretag.heads.softmax.SoftmaxHead` holding a fitted layer."""
    from .heads.softmax import SoftmaxHead

    head = SoftmaxHead(n_classes, inputs=recipe.inputs, reject=reject, temperature=temperature)
    head.feat_mean.copy_(mean)
    head.feat_std.copy_(std)
    head.linear.load_state_dict(linear.state_dict())
    return head.eval()


def view_matrix(backbone, pooled: np.ndarray, inputs: tuple[str, ...]) -> np.ndarray:
    """The ``inputs`` views of ``pooled [N, 1506]`` side by side, ``float32 [N, D]``
    (computed on one thread, like the fit, so that the bytes do not depend on the CPU count)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = []
        for i in range(0, len(pooled), 4096):
            v = backbone.views(pooled[i:i + 4096], inputs)
            out.append(np.concatenate([v[k].numpy() for k in inputs], axis=1))
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@dataclass
class Design:
    """Training/scoring matrices of one recipe: music rows then non-music rows."""

    x: np.ndarray        #: [N, D] views of every cached music slice
    labels: np.ndarray   #: [N] class index (into recipe.classes) per music row
    strata: np.ndarray   #: [N] collection per music row
    x_neg: np.ndarray    #: [M, D] views of the training non-music
    neg_kind: np.ndarray  #: [M] kind per non-music row
    reject: int = field(default=0)  #: index of the reject output (= number of classes)


def design(emb: Embeddings, nonmusic: NonMusic | None, backbone, recipe: Recipe) -> Design:
    classes = list(recipe.classes)
    label = np.asarray([classes.index(c.genre) for c in emb.clips])
    coll = np.asarray([c.collection for c in emb.clips])
    x_neg = (view_matrix(backbone, nonmusic.pooled, recipe.inputs) if nonmusic is not None
             else np.zeros((0, 1)))
    kinds = (np.asarray(nonmusic.kinds)[nonmusic.item] if nonmusic is not None
             else np.zeros(0, str))
    return Design(view_matrix(backbone, emb.pooled, recipe.inputs), label[emb.clip],
                  coll[emb.clip], x_neg, kinds, reject=len(classes))


#: Genre -> the backbone's MSD tags that name it (used by ``Recipe.tag_prior``).
TAG_PRIOR = {"blues": ("blues",), "country": ("country",), "electronic": ("electronic",),
             "hiphop": ("Hip-Hop",), "jazz": ("jazz",), "metal": ("metal",), "pop": ("pop",),
             "rock": ("rock",)}


def prior_weights(recipe: Recipe, n_outputs: int) -> np.ndarray | None:
    """``[n_outputs, D]``: ``tag_prior`` on each class's own tag logit, 0 elsewhere."""
    from .heads.lastfm import MSD_TAGS
    from .heads.softmax import VIEW_DIMS

    if not recipe.tag_prior or "tag_logits" not in recipe.inputs:
        return None
    offset = sum(VIEW_DIMS[v] for v in recipe.inputs[:recipe.inputs.index("tag_logits")])
    prior = np.zeros((n_outputs, sum(VIEW_DIMS[v] for v in recipe.inputs)), np.float32)
    for k, genre in enumerate(recipe.classes):
        for tag in TAG_PRIOR.get(genre, ()):
            prior[k, offset + MSD_TAGS.index(tag)] = recipe.tag_prior
    return prior


def fit_rows(d: Design, rows: np.ndarray, recipe: Recipe, *, neg_rows: np.ndarray | None = None):
    """``(mean, std, linear)`` fitted on music ``rows`` and non-music ``neg_rows``."""
    neg_rows = np.arange(len(d.x_neg)) if neg_rows is None else neg_rows
    x = np.concatenate([d.x[rows], d.x_neg[neg_rows]]) if len(neg_rows) else d.x[rows]
    labels = np.concatenate([d.labels[rows], np.full(len(neg_rows), d.reject)])
    strata = np.concatenate([d.strata[rows], np.full(len(neg_rows), "generated")])
    n_out = d.reject + int(len(d.x_neg) > 0)
    return fit_softmax(x, labels, slice_weights(labels, strata), n_out, l2=recipe.l2,
                       max_iter=recipe.max_iter, seed=recipe.seed,
                       prior=prior_weights(recipe, n_out))


def slice_logits(fitted, x: np.ndarray) -> np.ndarray:
    """Logits ``[N, outputs]`` of a fitted ``(mean, std, linear)`` for views ``x``."""
    import torch

    mean, std, linear = fitted
    with torch.inference_mode():
        return linear((torch.from_numpy(np.ascontiguousarray(x, np.float32)) - mean) / std) \
            .double().numpy()


# --------------------------------------------------------------------------- abstention

#: Seeds of the generated signals abstention is tested on (disjoint from training seeds).
TEST_NONMUSIC_SEEDS = (100, 101, 102, 103)


def abstention(d: Design, recipe: Recipe, emb: Embeddings, test: NonMusic, backbone,
               *, temperature: float, min_confidence: float, final=None) -> dict:
    """How generated non-music and out-of-vocabulary music score, per kind.

    ``final``: the fitted ``(mean, std, linear)`` of the shipped head, scored on ``test``
    (fresh seeds). ``leave_one_kind_out``: for each non-music kind, a head trained without
    that kind scores it, which shows how the reject class generalises to kinds it has
    never seen. A signal *abstains* when its best genre scores below ``min_confidence``.
    """
    from .protocol import track_scores

    n = d.reject
    x_test = view_matrix(backbone, test.pooled, recipe.inputs)
    test_kind = np.asarray(test.kinds)[test.item]
    rows = emb.rows(np.ones(len(emb.clips), bool), recipe.augmentations)

    def summary(fitted, kind):
        sel = test_kind == kind
        _, p = track_scores(slice_logits(fitted, x_test[sel]), test.item[sel], n,
                            temperature=temperature)
        best = p.max(1)
        return {"n": int(len(best)), "abstained": int((best < min_confidence).sum()),
                "max_confidence": round(float(best.max()), 4),
                "mean_confidence": round(float(best.mean()), 4)}

    out = {"min_confidence": min_confidence, "test_seeds": list(TEST_NONMUSIC_SEEDS),
           "shipped_head": {}, "leave_one_kind_out": {}}
    for kind in dict.fromkeys(test.kinds):
        if final is not None:
            out["shipped_head"][kind] = summary(final, kind)
        if kind in set(d.neg_kind):
            fitted = fit_rows(d, rows, recipe, neg_rows=np.flatnonzero(d.neg_kind != kind))
            out["leave_one_kind_out"][kind] = summary(fitted, kind)
    return out


# --------------------------------------------------------------------------- the model

MODEL_ID = "genretag-musicnn-msd"

DATA_PROVENANCE = {
    "gtzan": "GTZAN (Tzanetakis & Cook 2002), fault-filtered artist-disjoint train/valid "
             "split (Kereliuk, Sturm & Larsen 2015); research use, audio not redistributed",
    "emotify": "Emotify (Aljanaki, Wiering & Veltkamp 2016), Magnatune clips; research use "
               "(cite the paper), audio not redistributed",
}

KNOWN_LIMITS = [
    "Trained on 446 clips from two collections; per-class figures for country, disco, "
    "hiphop, reggae (GTZAN only, 8-12 clips each) are noise-level; reggae is not recognised "
    "across artists (0/8 in the 5-fold protocol).",
    "What Magnatune calls pop (mostly guitar-based) GTZAN would call rock: trained on GTZAN "
    "alone the recipe gets 0.53 on Emotify classical/pop/rock (target 0.70 not reached; "
    "0.73 when it answers among those three only, pop 20/50); "
    "pop/rock and classical/jazz (solo piano) are the main confusions across collections.",
    "Electronic comes from one collection (Magnatune) only.",
    "Band-limited audio (8 kHz files) still costs accuracy across collections "
    "(5-fold: 0.70 clean, 0.66 band-limited).",
    "The not-music class is trained on generated signals (noise, tones, sweeps, clicks, hum, "
    "speech-like pulse trains); a kind it has not seen can still get a genre (brown noise "
    "left out of training: 1 of 4 above min_confidence), and real speech or field "
    "recordings were not tested.",
    "Music outside the eleven genres is not rejected: a generated gamelan-like piece gets "
    "a genre with confidence 0.9.",
    "min_confidence is chosen for 90 % precision on held-out tracks of the 5-fold protocol; "
    "there it leaves about 70 % of tracks without a genre.",
]


def strip_heldout(result: dict) -> dict:
    """A protocol result without its arrays (what the model card keeps)."""
    return {k: v for k, v in result.items() if k not in ("heldout_c", "folds")}


def resolve_backbone(path: str | Path | None) -> tuple[Path, str]:
    """``(file, sha256)`` of the backbone: ``path`` if given, else the one the shipped
    genre model's card names (verified when loaded)."""
    from .model import read_card, sha256_file, shipped_weights_dir

    if path:
        path = Path(path)
        if not path.is_file():
            raise TrainingError(f"{path}: backbone file not found")
        return path, sha256_file(path)
    weights = shipped_weights_dir()
    entry = read_card(weights)["backbone"]
    return weights / entry["path"], entry["sha256"]


@dataclass
class Prepared:
    """Everything a recipe is fitted and measured on."""

    clips: list[Clip]
    emb: Embeddings
    design: Design
    labels: np.ndarray  #: [n_clips] class index
    backbone: object
    backbone_path: Path
    negatives: NonMusic


def prepare(data_dirs: list[Path], *, cache_dir: Path, backbone: str | Path | None,
            recipe: Recipe, log: Callable[[str], None] = print) -> Prepared:
    """Load the collections, embed them (cached) and the training non-music."""
    from .backbone import load_backbone
    from .collections import load_collection
    from .nonmusic import NON_MUSIC

    clips = [c for path in data_dirs for c in load_collection(path, genres=recipe.classes)]
    path, sha = resolve_backbone(backbone)
    net = load_backbone(path, sha)
    log(f"{len(clips)} clips; embeddings cached in {cache_dir}")
    emb = embed_collections(clips, net, cache_dir, augmentations=recipe.augmentations, log=log)
    negatives = cached_nonmusic(net, cache_dir, list(NON_MUSIC), recipe.nonmusic_seeds,
                                "nonmusic_train", seconds=recipe.nonmusic_seconds)
    labels = np.asarray([list(recipe.classes).index(c.genre) for c in clips])
    return Prepared(clips, emb, design(emb, negatives, net, recipe), labels, net, path,
                    negatives)


def measure(p: Prepared, recipe: Recipe, log: Callable[[str], None] = print) -> dict:
    """The protocol, the temperature and the calibration report for ``recipe``."""
    from .protocol import calibration_report, fit_temperature, run_protocol

    n = len(recipe.classes)
    log("protocol:")
    result = run_protocol(p.emb, p.design, recipe, log=log)
    held = result["heldout_c"]["clean"]
    temperature = fit_temperature(held, p.labels, n)
    calib = calibration_report(held, p.labels, n, temperature)
    log(f"temperature {temperature}: ECE {calib['ece_uncalibrated']} -> "
        f"{calib['ece_calibrated']}; min_confidence {calib['min_confidence']} "
        f"(coverage {calib['coverage_at_min_confidence']})")
    return {"protocol": strip_heldout(result), "calibration": calib}


def evaluate_recipe(data_dirs: list[Path], *, cache_dir: Path, backbone: str | Path | None = None,
                    recipe: Recipe = Recipe(), log: Callable[[str], None] = print) -> dict:
    """:func:`measure` on the collections in ``data_dirs`` (what ``genretag evaluate`` runs)."""
    return measure(prepare(data_dirs, cache_dir=cache_dir, backbone=backbone, recipe=recipe,
                           log=log), recipe, log)


def train(data_dirs: list[Path], out_dir: Path, *, cache_dir: Path,
          backbone: str | Path | None = None, recipe: Recipe = Recipe(),
          version: str = "2.0.0", evaluate: bool = True, reference_metrics: dict | None = None,
          command: str = "", log: Callable[[str], None] = print) -> dict:
    """Train the genre head on the collections in ``data_dirs`` and write a model directory.

    Steps: embed every clip in the recipe's augmentations (cached in ``cache_dir``) and the
    generated non-music; unless ``evaluate`` is false, run the protocol
    (:func:`genretag.protocol.run_protocol`), fit the temperature and choose
    ``min_confidence`` on its held-out folds; fit the head on everything; measure
    abstention; write ``out_dir`` (head ``.safetensors`` + ``model_card.json``; the backbone
    is referenced by file name and sha256). The same inputs give the same files, byte for
    byte. ``reference_metrics`` (e.g. the previous model on the same protocol) go into the
    card as they are. Returns the card.
    """
    from .nonmusic import KINDS

    p = prepare(data_dirs, cache_dir=cache_dir, backbone=backbone, recipe=recipe, log=log)
    n = len(recipe.classes)
    metrics: dict = {}
    temperature, min_confidence = 1.0, 0.0
    if evaluate:
        metrics = measure(p, recipe, log)
        temperature = metrics["calibration"]["temperature"]
        min_confidence = metrics["calibration"]["min_confidence"]
    log("fitting the head on every clip")
    rows = p.emb.rows(np.ones(len(p.clips), bool), recipe.augmentations)
    final = fit_rows(p.design, rows, recipe)
    if evaluate:
        test = cached_nonmusic(p.backbone, cache_dir, list(KINDS), TEST_NONMUSIC_SEEDS,
                               "nonmusic_test", seconds=recipe.nonmusic_seconds)
        metrics["abstention"] = abstention(p.design, recipe, p.emb, test, p.backbone,
                                           temperature=temperature,
                                           min_confidence=min_confidence, final=final)
    if reference_metrics:
        metrics["reference"] = reference_metrics
    head = make_head(*final, n, recipe, reject=True, temperature=temperature)
    return write_model_dir(head, out_dir, version=version, classes=list(recipe.classes),
                           backbone_path=p.backbone_path, backbone_sha256=p.backbone.sha256,
                           recipe=recipe, clips=p.clips, metrics=metrics,
                           min_confidence=min_confidence, command=command)


def write_model_dir(head, out_dir: Path, *, version: str, classes: list[str],
                    backbone_path: Path, backbone_sha256: str, recipe: Recipe,
                    clips: list[Clip], metrics: dict, min_confidence: float,
                    command: str) -> dict:
    """Write ``head`` and its ``model_card.json`` (card format 2) to ``out_dir``."""
    from .backbone import MUSICNN_PROVENANCE
    from .features import MUSICNN_FEATURES
    from .model import CARD_FORMAT, CARD_NAME, save_tensors

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    head_file = out_dir / f"{MODEL_ID}-head-v{version}.safetensors"
    entry = save_tensors(head.state_dict(), head_file)
    counts: dict = {}
    for c in clips:
        counts.setdefault(c.collection, {}).setdefault(c.genre, 0)
        counts[c.collection][c.genre] += 1
    card = {
        "format": CARD_FORMAT, "model_id": MODEL_ID, "version": version,
        "vocabulary": "genres", "classes": classes,
        "head": {"arch": head.arch, "params": {"inputs": list(head.inputs), "reject": True,
                                               "temperature": head.temperature}},
        "backbone": {"path": backbone_path.name, "sha256": backbone_sha256},
        "features": MUSICNN_FEATURES.to_dict(), "files": [entry],
        "min_confidence": min_confidence,
        "training": {
            "collections": {name: {"clips": sum(g.values()), "per_genre": g,
                                   "provenance": DATA_PROVENANCE.get(name, "")}
                            for name, g in counts.items()},
            "recipe": recipe.to_dict(),
            "balance": "classes equal; within a class, collections equal (slice weights)",
            "non_music_kinds": _nonmusic_kinds(),
            "command": command,
        },
        "metrics": metrics,
        "known_limits": KNOWN_LIMITS,
        "provenance": [MUSICNN_PROVENANCE],
    }
    (out_dir / CARD_NAME).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    (out_dir / "MODEL_CARD.md").write_text(card_markdown(card), encoding="utf-8")
    return card


def _protocol_rows(protocol: dict) -> list[str]:
    parts = protocol["parts"]
    rows = []
    for name, m in parts.items():
        if name.endswith("[clean]") or name.endswith("[band8k]"):
            rows.append(f"| {name} | {m['n']} | {m['accuracy']:.3f} | "
                        f"{m['balanced_accuracy']:.3f} |")
    return rows


def card_markdown(card: dict) -> str:
    """A short human-readable page for a card written by :func:`write_model_dir`."""
    from .metrics import format_report

    m = card.get("metrics", {})
    lines = [f"# {card['model_id']} {card['version']}", "",
             f"Classes ({len(card['classes'])}): {', '.join(card['classes'])}.", "",
             f"Head `{card['head']['arch']}` on the musicnn MSD backbone "
             f"(sha256 `{card['backbone']['sha256'][:16]}...`): "
             f"{json.dumps(card['head']['params'])}. "
             f"Recipe: {json.dumps(card['training']['recipe'])}.", "",
             f"`min_confidence` = **{card['min_confidence']}**: below it no genre is written.",
             "", "## Training data", ""]
    for name, c in card["training"]["collections"].items():
        lines.append(f"- {name}: {c['clips']} clips {json.dumps(c['per_genre'])}. "
                     f"{c['provenance']}")
    proto = m.get("protocol")
    if proto:
        lines += ["", "## Cross-collection protocol (track accuracy)", "",
                  f"Mean of (a), (b), (c): **{proto['mean']:.3f}** "
                  f"(a {proto['a']:.3f}, b {proto['b']:.3f}, c {proto['c']:.3f}).", ""]
        ref = m.get("reference")
        if ref and "mean" in ref:
            lines += [f"Same protocol, {ref.get('name', 'reference')}: mean "
                      f"{ref['mean']:.3f} (a {ref['a']:.3f}, b {ref['b']:.3f}, "
                      f"c {ref['c']:.3f}).", ""]
        lines += ["| part | n | accuracy | balanced |", "|---|---|---|---|",
                  *_protocol_rows(proto), "", "```"]
        for key in ("c 5-fold [clean]", "b gtzan->emotify [clean]",
                    "b gtzan->emotify, shared genres only [clean]", "b emotify->gtzan [clean]"):
            if key in proto["parts"]:
                lines.append(format_report(key, proto["parts"][key], card["classes"]))
        lines.append("```")
    cal = m.get("calibration")
    if cal:
        lines += ["", "## Calibration and min_confidence", "",
                  f"Temperature {cal['temperature']} fitted on the held-out folds of (c): "
                  f"ECE {cal['ece_uncalibrated']:.3f} -> {cal['ece_calibrated']:.3f}. "
                  f"At `min_confidence` {cal['min_confidence']} held-out tracks are right "
                  f"{cal['precision_at_min_confidence']} of the time and "
                  f"{cal['coverage_at_min_confidence']:.0%} of them get a genre.", "",
                  "| threshold | coverage | precision |", "|---|---|---|"]
        for row in cal["precision_coverage"][::10]:
            lines.append(f"| {row['threshold']:.2f} | {row['coverage']:.3f} | "
                         f"{row['precision']} |")
    ab = m.get("abstention")
    if ab:
        lines += ["", "## Abstention on generated signals", "",
                  "Fresh seeds; *abstained* = best genre below `min_confidence`. "
                  "Leave-one-kind-out: a head trained without that kind.", "",
                  "| kind | abstained | max confidence | leave-one-kind-out abstained |",
                  "|---|---|---|---|"]
        for kind, r in ab["shipped_head"].items():
            loko = ab["leave_one_kind_out"].get(kind)
            lines.append(f"| {kind} | {r['abstained']}/{r['n']} | {r['max_confidence']:.2f} | "
                         + (f"{loko['abstained']}/{loko['n']} (max {loko['max_confidence']:.2f})"
                            if loko else "not trained on") + " |")
    lines += ["", "## Known limits", "", *[f"- {x}" for x in card.get("known_limits", [])],
              "", "## Provenance and licences", ""]
    for prov in card.get("provenance", []):
        lines.append(f"- {prov['name']}: {prov['source']}; {prov['paper']}; licence "
                     f"{prov['licence']}. {prov['licence_text']}")
    lines.append(f"- Reproduce: `{card['training']['command']}`")
    return "\n".join(lines) + "\n"


def _nonmusic_kinds() -> list[str]:
    from .nonmusic import NON_MUSIC

    return list(NON_MUSIC)
