"""``beet genretag --learn``: a personal model from the library's own genres, in beets."""
from __future__ import annotations

import pytest

from genretag.encode import write
from genretag.synthetic import synth_music

from .plugin_support import InProcess, add_tags
from .test_learning import SR, _pad


@pytest.fixture
def library(tmp_path):
    """12 drum loops and 12 pads by 4 artists each, imported as is, genres set by the
    user; 10 more loops whose genre "Disco" genretag set (never to be learnt from); one
    new loop and one new pad without genres."""
    src = tmp_path / "src"
    src.mkdir()
    kinds = {"beat": lambda i: synth_music(4.0, SR, seed=i), "pad": lambda i: _pad(4.0, seed=i)}
    for kind, make in kinds.items():
        for i in range(12):
            path = src / f"{kind}{i}.flac"
            write(make(i), SR, path)
            add_tags(path, title=f"{kind} {i}", artist=f"{kind}er {i % 4}", album="", track=i)
    for i in range(10):
        path = src / f"disco{i}.flac"
        write(synth_music(4.0, SR, seed=50 + i), SR, path)
        add_tags(path, title=f"disco {i}", artist=f"disco {i % 4}", album="", track=i)
    for kind, make in kinds.items():
        path = src / f"new {kind}.flac"
        write(make(99), SR, path)
        add_tags(path, title=f"new {kind}", artist="newcomer", album="", track=1)
    beets = InProcess(auto=False)
    beets.import_("-A", "-s", str(src))
    for item in beets.lib.items():
        kind = item.title.split()[0]
        if kind in ("beat", "pad"):
            item.genres = ["Beat Music" if kind == "beat" else "ambient pads"]
        elif kind == "disco":
            item.genres = ["Disco"]
            item["genretag_genres"] = ["Disco"]  # as genretag itself records its own
        item.store()
    yield beets
    beets.close()


def test_learn_then_tag_with_the_personal_vocabulary(library):
    out = library.run("genretag", "--learn")
    text = out.stdout
    assert ("learning from 24 items with genres set by you or other plugins (not from 10 "
            "with genres genretag set and 2 without genres)") in text
    assert "Beat Music" in text and "ambient pads" in text and "Disco" not in text
    assert "Cross-validation: " in text and "recall" in text
    assert "always guessing the commonest genre" in text
    assert "saved genretag-personal-" in text
    first_id = text.split("saved ")[1].split()[0]

    library.configure(auto=False, vocabulary="personal")
    library.run("genretag", "title:new")
    items = library.items()
    assert items["new beat"]["genretag_model"] == f"{first_id}/1"
    assert items["new beat"].genres == ["Beat Music"]
    assert items["new pad"].genres == ["ambient pads"]

    library.run("genretag")  # the whole library: user-set genres are never replaced
    items = library.items()
    assert all(items[f"beat {i}"].genres == ["Beat Music"] for i in range(12))
    assert all(items[f"pad {i}"].genres == ["ambient pads"] for i in range(12))
    # ... and agree with the model learnt from them, whatever the case of its classes.
    agreeing = [items[f"{kind} {i}"].get("genretag_agrees") for kind in ("beat", "pad")
                for i in range(12)]
    assert agreeing.count(True) >= 22, agreeing

    # Retraining on other examples gives another model id, so everything is re-tagged.
    for item in library.lib.items("title:pad"):
        if item.title == "pad 0":
            item.genres = ["Drone"]
            item.store()
    out = library.run("genretag", "--learn")
    second_id = out.stdout.split("saved ")[1].split()[0]
    assert second_id != first_id
    library.configure(auto=False, vocabulary="personal")
    out = library.run("genretag", "title:new")
    assert "2 tagged" in out.stdout
    assert library.items()["new beat"]["genretag_model"] == f"{second_id}/1"


def test_too_few_examples_is_a_clear_error(library):
    from beets import ui

    for item in library.lib.items("title:pad"):
        item.genres = []
        item.store()
    with pytest.raises(ui.UserError, match="at least two genres need 10 examples.*"
                                           "the `min_examples` option") as raised:
        library.run("genretag", "--learn")
    assert "--min-examples" not in str(raised.value)  # a flag of `genretag learn`, not beets'


def test_min_examples_is_an_option(library):
    from beets import ui

    library.configure(auto=False, min_examples=13)   # 12 beats and 12 pads: too few
    with pytest.raises(ui.UserError, match="at least two genres need 13 examples"):
        library.run("genretag", "--learn")


def test_the_personal_vocabulary_before_any_learning_says_what_to_do(library):
    from beets import ui

    library.configure(auto=False, vocabulary="personal")
    with pytest.raises(ui.UserError, match=r"no personal model there yet; learn one with "
                                           r"`beet genretag --learn`"):
        library.run("genretag")
