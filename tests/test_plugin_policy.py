"""The beets plugin's pure parts: settings and their checks, genre choices, stored fields,
the summary line, the forced-run record. No audio, no model, no beets library."""
from __future__ import annotations

from collections import Counter

import pytest
from beets.library import Album, Item

from beetsplug.genretag import resume
from beetsplug.genretag.policy import (agrees, album_distribution, change_line, class_aliases,
                                       format_probs, genretag_set, is_silent, needs_tagging,
                                       new_genres, parse_probs, pick_genres, result_fields,
                                       summary_line, user_genres)
from beetsplug.genretag.settings import (DEFAULT_GENRE_MAP, Settings, config_warnings,
                                         defaults, read_settings)

CLASSES = list(DEFAULT_GENRE_MAP)


def test_probs_round_trip_through_the_stored_string():
    probs = {"blues": 0.123, "hiphop": 0.5, "rock": 0.377}
    text = format_probs(probs)
    assert text == "blues:0.12 hiphop:0.50 rock:0.38"
    assert parse_probs(text) == {"blues": 0.12, "hiphop": 0.5, "rock": 0.38}
    assert parse_probs("") == {} and parse_probs("blues:x rock:0.1") == {}
    # lastfm tags hold spaces; albums and resumed runs read their tracks' strings back
    tags = {"rock": 0.5, "indie rock": 0.81, "hip-hop": 0.1, "progressive rock": 0.0}
    assert parse_probs(format_probs(tags)) == tags
    assert parse_probs("rock") == {} and parse_probs(":0.5") == {}


def test_pick_genres_takes_top_k_above_threshold_through_the_map():
    probs = {"blues": 0.1, "hiphop": 0.5, "jazz": 0.3, "rock": 0.1}
    pick = dict(min_confidence=0.0, genre_map=DEFAULT_GENRE_MAP)
    assert pick_genres(probs, count=1, **pick) == ["Hip-Hop"]
    assert pick_genres(probs, count=2, **pick) == ["Hip-Hop", "Jazz"]
    assert pick_genres(probs, count=3, min_confidence=0.3, genre_map={}) == ["hiphop", "jazz"]
    assert pick_genres(probs, count=1, min_confidence=0.6, genre_map={}) == []
    # Mapped to one name, it appears once; mapped to "", it is dropped.
    merged = {"hiphop": "Urban", "jazz": "Urban", "blues": ""}
    assert pick_genres(probs, count=3, min_confidence=0.0, genre_map=merged) == ["Urban"]


@pytest.mark.parametrize("current, pick, ours, overwrite, expected", [
    ([], ["Jazz"], None, False, (["Jazz"], True)),                  # empty: take the pick
    (["Shoegaze"], ["Jazz"], None, False, (["Shoegaze"], False)),   # the user's: kept
    (["Shoegaze"], ["Jazz"], None, True, (["Jazz"], True)),         # ... unless overwriting
    (["Shoegaze"], [], None, True, (["Shoegaze"], False)),          # nothing to put instead
    (["Disco"], ["Jazz"], ["Disco"], False, (["Jazz"], True)),      # genretag's: follows
    (["Disco"], [], ["Disco"], False, ([], True)),                  # ... even to nothing (B7)
    (["Disco"], [], ["Disco"], True, ([], True)),
    (["Jazz"], ["Jazz"], None, False, (["Jazz"], False)),           # same name, still the user's
])
def test_new_genres(current, pick, ours, overwrite, expected):
    assert new_genres(current, pick, ours=ours, overwrite=overwrite) == expected


def test_genretag_set_reads_the_record_or_falls_back_to_the_stored_pick():
    settings = Settings(min_confidence=0.0)
    assert genretag_set(Item(genretag_genres=["Disco"]), settings) == ["Disco"]
    assert genretag_set(Item(genretag_genres=[]), settings) is None  # it left them alone
    legacy = Item(genretag_probs="disco:0.70 jazz:0.30")  # tagged before the record existed
    assert genretag_set(legacy, settings) == ["Disco"]
    assert genretag_set(Item(), settings) is None


def test_album_distribution_mixes_new_and_stored_predictions():
    model_id = "m/2"
    stored = Item(id=1, genretag_model=model_id, genretag_probs="jazz:0.80 rock:0.20")
    outdated = Item(id=2, genretag_model="m/1", genretag_probs="jazz:0.00 rock:1.00")
    fresh = Item(id=3)
    mean = album_distribution([stored, outdated, fresh], {3: {"jazz": 0.4, "rock": 0.6}},
                              model_id)
    assert mean == pytest.approx({"jazz": 0.6, "rock": 0.4})
    assert album_distribution([outdated], {}, model_id) is None
    assert needs_tagging(outdated, model_id, force=False)
    assert not needs_tagging(stored, model_id, force=False)
    assert needs_tagging(stored, model_id, force=True)


def test_result_fields_record_what_genretag_set():
    fields = result_fields({"jazz": 0.25, "rock": 0.75}, "m/1", ["Rock"])
    assert fields == {"genretag_genre": "rock", "genretag_confidence": 0.75,
                      "genretag_model": "m/1", "genretag_probs": "jazz:0.25 rock:0.75",
                      "genretag_genres": ["Rock"]}
    assert result_fields({"jazz": 1.0}, "m/1", None)["genretag_genres"] == []


def test_change_line():
    item = Item(artist="Nina Simone", title="Sinnerman")
    assert (change_line(item, [], ["Jazz"], 0.876)
            == "Nina Simone - Sinnerman: (none) → Jazz (0.88)")
    album = Album(albumartist="Slayer", album="Reign in Blood")
    assert (change_line(album, ["Thrash", "Metal"], ["Metal"], 0.5)
            == "Slayer - Reign in Blood: Thrash, Metal → Metal (0.50)")
    # A prediction that is not stored says so, next to its own confidence.
    assert (change_line(item, ["Pop"], ["Pop"], 0.49, predicted="Rock",
                        why="your genres kept")
            == "Nina Simone - Sinnerman: Pop → Pop (Rock 0.49; your genres kept)")
    assert (change_line(item, [], [], 0.45, predicted="Jazz", why="below the cut")
            == "Nina Simone - Sinnerman: (none) → (none) (Jazz 0.45; below the cut)")
    assert change_line(item, [], ["Jazz"], 0.9, predicted="Jazz") \
        == "Nina Simone - Sinnerman: (none) → Jazz (0.90)"
    # the user's spelling of the predicted genre is no disagreement
    assert (change_line(item, ["Hip Hop"], ["Hip Hop"], 0.95, predicted="Hip-Hop",
                        why="your genres kept")
            == "Nina Simone - Sinnerman: Hip Hop → Hip Hop (0.95)")
    untagged = Item(path=b"/music/untagged/track07.flac")
    assert change_line(untagged, [], ["Jazz"], 0.77) == "track07.flac: (none) → Jazz (0.77)"


def test_silence_is_recognised_in_both_shapes_the_core_reports_it():
    from genretag import Failure

    class Silent:
        silent = True

    assert is_silent(Silent())
    assert not is_silent(Failure("a.flac", "the audio is silent (peak below -80 dBFS)"))
    assert not is_silent(Failure("a.flac", "not a recognised audio file"))


@pytest.mark.parametrize("extra, line, interrupted_album_line", [
    ({}, "genretag: 3 tagged, 2 skipped, 1 failed",
     "genretag: 3 would be tagged, 2 skipped, 1 failed, 0 albums, 6 not done (interrupted)"),
    ({"silent": 2}, "genretag: 3 tagged, 2 skipped, 1 failed, 2 silent",
     "genretag: 3 would be tagged, 2 skipped, 1 failed, 2 silent, 0 albums, "
     "4 not done (interrupted)"),
    ({"singletons": 4}, "genretag: 3 tagged, 2 skipped, 1 failed, 4 singletons left out (-a)",
     "genretag: 3 would be tagged, 2 skipped, 1 failed, 0 albums, 4 singletons left out (-a), "
     "6 not done (interrupted)"),
])
def test_summary_line(extra, line, interrupted_album_line):
    counts = Counter(tagged=3, skipped=2, failed=1, todo=10, **extra)
    assert summary_line(counts, album=False, pretend=False, interrupted=False) == line
    assert (summary_line(counts, album=True, pretend=True, interrupted=True)
            == interrupted_album_line)


def test_defaults_are_the_documented_ones():
    assert defaults() == {
        "auto": True, "vocabulary": "genres", "personal_model": "", "canonical": False,
        "count": 1, "min_confidence": None, "overwrite": False, "force": False,
        "album_consistent": False, "max_slices": 10, "adaptive": True, "jobs": 1,
        "timeout": 120.0, "min_examples": 10,
        "genre_map": DEFAULT_GENRE_MAP}
    settings, problems = read_settings(defaults())
    assert problems == [] and settings == Settings()


@pytest.mark.parametrize("values, problem", [
    ({"count": 0}, "genretag.count must be at least 1, not 0"),
    ({"count": 1.5}, "genretag.count must be a whole number, not 1.5"),
    ({"jobs": 0}, "genretag.jobs must be at least 1, not 0"),
    ({"auto": "maybe"}, "genretag.auto must be yes or no, not 'maybe'"),
    ({"min_confidence": 1.5}, "genretag.min_confidence must be in 0..1, not 1.5"),
    ({"min_confidence": "high"}, "genretag.min_confidence must be a number, not 'high'"),
    ({"timeout": 0}, "genretag.timeout must be above 0, not 0"),
    ({"timeout": -1}, "genretag.timeout must be above 0, not -1"),
    ({"max_slices": 0}, "genretag.max_slices must be at least 1, not 0"),
    ({"overwrite": 1}, "genretag.overwrite must be yes or no, not 1"),
    ({"adaptive": "sometimes"}, "genretag.adaptive must be yes or no, not 'sometimes'"),
    ({"genre_map": ["Jazz"]}, "genretag.genre_map must map model classes to names, not ['Jazz']"),
    ({"genre_map": {"jazz": 3}}, "genretag.genre_map jazz: the name must be text, not 3"),
])
def test_bad_values_are_named(values, problem):
    settings, problems = read_settings({**defaults(), **values})
    assert settings is None and problems == [problem]


def test_genre_map_entries_merge_over_the_default():
    settings, _ = read_settings({**defaults(), "genre_map": {"hiphop": "Hip Hop", "disco": None}})
    assert settings.genre_map == {**DEFAULT_GENRE_MAP, "hiphop": "Hip Hop", "disco": ""}


def test_warnings_for_unknown_options_and_classes():
    values = {**defaults(), "forse": True, "genre_map": {**DEFAULT_GENRE_MAP, "disko": "X"}}
    assert config_warnings(values, CLASSES) == [
        "genretag.forse is not an option of this plugin; it is ignored (options: "
        "adaptive, album_consistent, auto, canonical, count, force, genre_map, jobs, max_slices, "
        "min_confidence, min_examples, overwrite, personal_model, timeout, vocabulary)",
        "genretag.genre_map: 'disko' is not a class of the model; it is ignored (classes: "
        + ", ".join(CLASSES) + ")"]
    assert config_warnings(defaults(), CLASSES) == []
    assert config_warnings(values, None)[1:] == []  # classes unknown: no class check


def test_forced_run_record(tmp_path):
    key = resume.run_key(["artist:x"], album=False, model_id="m/1", settings=Settings(),
                         write=True)
    assert key == resume.run_key(["artist:x"], album=False, model_id="m/1",
                                 settings=Settings(), write=True)
    for other in (dict(query=["artist:y"], album=False, model_id="m/1", settings=Settings()),
                  dict(query=["artist:x"], album=True, model_id="m/1", settings=Settings()),
                  dict(query=["artist:x"], album=False, model_id="m/2", settings=Settings()),
                  dict(query=["artist:x"], album=False, model_id="m/1",
                       settings=Settings(count=2))):
        query = other.pop("query")
        assert resume.run_key(query, write=True, **other) != key
    assert resume.load(tmp_path) is None
    resume.save(tmp_path, resume.ForcedRun(key=key, started=12.5))
    assert resume.load(tmp_path) == resume.ForcedRun(key=key, started=12.5)
    assert [p.name for p in tmp_path.iterdir()] == [resume.STATE_NAME]
    resume.clear(tmp_path)
    resume.clear(tmp_path)  # already gone: fine
    assert list(tmp_path.iterdir()) == []
    (tmp_path / resume.STATE_NAME).write_text("{not json")
    assert resume.load(tmp_path) is None


def test_agreement_between_user_genres_and_the_prediction():
    aliases = class_aliases({**DEFAULT_GENRE_MAP, "disco": ""})
    assert aliases["hiphop"] == "hiphop" and "disco" not in aliases
    assert agrees(["  HIP-HOP "], "hiphop", aliases) is True
    assert agrees(["Jazz", "hiphop"], "hiphop", aliases) is True  # a class name as such
    assert agrees(["Shoegaze"], "hiphop", aliases) is False
    assert agrees(["Rap"], "hiphop", class_aliases({"hiphop": "Rap"})) is True
    # A personal model's classes are spelt as the user spelt them; lastfm's are tags.
    assert agrees(["classical"], "Classical", {}) is True
    assert agrees(["post rock"], "Post-Rock", {}) is True
    assert agrees(["R&B"], "rnb", {}) is True and agrees(["Rock"], "Classical", {}) is False
    # A multi-label prediction agrees through any genre it lists (lastfm; canonical parents)
    assert agrees(["Electronic"], "dance", {}, listed=["Dance", "Electronic"]) is True
    assert agrees(["Rock"], "indie rock", {}, listed=["Rock", "Electronic"]) is True
    assert agrees(["Jazz"], "dance", {}, listed=["Dance", "Electronic"]) is False
    assert agrees([], "hiphop", aliases) is None and agrees([" "], "jazz", aliases) is None
    settings = Settings()
    assert user_genres(Item(genres=["Jazz"], genretag_genres=["Jazz"]), settings) == []
    assert user_genres(Item(genres=["Jazz"], genretag_genres=[]), settings) == ["Jazz"]
    assert user_genres(Item(genres=["Jazz"]), settings) == ["Jazz"]
    assert user_genres(Item(genres=[]), settings) == []


def test_settings_take_the_cut_and_names_from_the_model_card():
    card = {"classes": ["rock", "indie rock"], "thresholds": {"rock": 0.7, "indie rock": 0.7},
            "display_names": {"rock": "Rock", "indie rock": "Indie Rock"},
            "canonical": {"rock": "Rock", "indie rock": "Rock"}}
    plain = Settings().for_model(card)
    assert plain.min_confidence == 0.7 and plain.genre_map["indie rock"] == "Indie Rock"
    assert Settings(canonical=True).for_model(card).genre_map["indie rock"] == "Rock"
    assert Settings(min_confidence=0.2).for_model({"min_confidence": 0.6}).min_confidence == 0.2
    assert Settings().for_model({"min_confidence": 0.6}).min_confidence == 0.6
    mapped = Settings(genre_map={"indie rock": "Indie"}).for_model(card)
    assert mapped.genre_map["indie rock"] == "Indie"  # the user's map comes last
