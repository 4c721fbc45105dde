"""Adaptive analysis: read the planned slices coarse to fine, stop once the head is sure."""
import numpy as np
import pytest

from genretag import classify_file, defaults, load_model
from genretag.audio import plan_slices
from genretag.cache import EmbeddingCache
from genretag.classify import analyse_file, cached_analysis, usable
from genretag.features import MUSICNN_FEATURES as P


@pytest.fixture(scope="module")
def long_track(tmp_path_factory):
    """40 s of generated music: 13 slices, of which the default plan reads 10."""
    from genretag.encode import write
    from genretag.synthetic import synth_music

    path = tmp_path_factory.mktemp("adaptive") / "long.flac"
    write(synth_music(40.0, 16000, seed=11)[0], 16000, path)
    return path


def test_stops_at_the_first_settled_check(model, long_track):
    """``settled`` is asked after 3, 5, 7 ... slices; the analysis ends at the first yes,
    in time order, and those slices are the fixed analysis' own."""
    fixed = analyse_file(long_track, model.backbone, max_slices=10)
    asked = []

    def settled(embedding):
        asked.append(len(embedding))
        return len(embedding) >= 5

    part = analyse_file(long_track, model.backbone, max_slices=10, settled=settled)
    assert asked == [defaults.FIRST_CHECK, defaults.FIRST_CHECK + defaults.CHECK_EVERY] == [3, 5]
    read = plan_slices(40.0, P.slice_seconds, 10, adaptive=True)[:5]
    assert part.starts.tolist() == sorted(read)
    rows = [fixed.starts.tolist().index(s) for s in part.starts]
    assert np.allclose(part.embedding, fixed.embedding[rows], atol=2e-3)

    never = analyse_file(long_track, model.backbone, max_slices=10, settled=lambda e: False)
    assert never.starts.tolist() == fixed.starts.tolist()
    assert np.allclose(never.embedding, fixed.embedding, atol=2e-3)


def test_the_genre_head_stops_early_on_a_clear_track(model, long_track):
    fixed = classify_file(long_track, model, adaptive=False)
    adaptive = classify_file(long_track, model)  # the default
    assert defaults.ADAPTIVE
    assert len(fixed.timeline) == 10
    assert defaults.FIRST_CHECK <= len(adaptive.timeline) < 10
    assert adaptive.genre == fixed.genre


def test_multi_label_heads_read_every_planned_slice(long_track):
    lastfm = load_model(vocabulary="lastfm")
    assert not lastfm.can_settle
    assert len(classify_file(long_track, lastfm).timeline) == 10


def test_settled_is_the_lead_of_the_best_class(model):
    """The rule: in the mean of the slices' scores, best minus second >= SETTLED_MARGIN."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        emb = (rng.standard_normal((3, 1506)) * 3).astype(np.float32)
        top = np.sort(model.scores(emb).mean(0))[::-1]
        assert model.settled(emb) == (top[0] - top[1] >= defaults.SETTLED_MARGIN)


def test_cached_adaptive_analysis_serves_other_heads_only_when_they_agree(
        model, long_track, tmp_path):
    """An adaptive entry is stored as such; a head it does not settle, or a fixed
    analysis, analyses again; a fixed entry serves an adaptive analysis."""
    cache = EmbeddingCache(tmp_path / "c.sqlite", backbone_sha256=model.backbone.sha256)
    first = cached_analysis(long_track, model, cache=cache)
    hit = cache.get(long_track, slices_key="auto:10")
    assert hit is not None and hit.n_slices == len(first.starts) < 10 and first.stopped_early
    assert usable(hit, model)
    lastfm = load_model(vocabulary="lastfm")
    assert not usable(hit, lastfm)  # stopped early on the genre head's terms only
    again = cached_analysis(long_track, lastfm, cache=cache)
    assert len(again.starts) == 10
    entry = cache.get(long_track, slices_key=("auto:10", "10"))
    assert entry.slices_key == "10" and entry.n_slices == 10
    reused = cached_analysis(long_track, model, cache=cache)  # the fixed entry serves
    assert len(reused.starts) == 10 and np.array_equal(reused.embedding, again.embedding)
    cache.close()


def test_an_adaptive_analysis_that_read_every_slice_is_cached_as_a_fixed_one(
        model, tmp_path, monkeypatch):
    """A track the head is never sure of is read whole once, then served from the cache
    (an unsettled short track must not be analysed again on every run)."""
    from genretag import classify
    from genretag.encode import write
    from genretag.synthetic import synth_music

    path = tmp_path / "short.flac"
    write(synth_music(20.0, 16000, seed=4)[0], 16000, path)
    monkeypatch.setattr(model, "settled", lambda embedding: False)
    cache = EmbeddingCache(tmp_path / "c.sqlite", backbone_sha256=model.backbone.sha256)
    first = cached_analysis(path, model, cache=cache)
    assert len(first.starts) == 6 and not first.stopped_early
    assert cache.get(path, slices_key=10).n_slices == 6

    def no_decoding(*args, **kwargs):
        raise AssertionError("analysed again")

    monkeypatch.setattr(classify, "analyse_file", no_decoding)
    again = cached_analysis(path, model, cache=cache)
    assert np.array_equal(again.embedding, first.embedding)
    cache.close()


def test_cli_fixed_slices_reads_every_planned_slice(model, long_track, capsys):
    """``genretag classify`` is adaptive unless ``--fixed-slices``: same answers as the
    library's two modes."""
    import json

    from genretag import cli

    answers = {}
    for flag in ([], ["--fixed-slices"]):
        assert cli.main(["classify", "--json", "--no-cache", "-j", "1", *flag,
                         str(long_track)]) == 0
        answers[bool(flag)] = json.loads(capsys.readouterr().out)["confidence"]
    for fixed, confidence in answers.items():
        want = classify_file(long_track, model, adaptive=not fixed).confidence
        assert confidence == round(want, 4)  # --json gives 4 decimals
    assert answers[True] != answers[False]
