"""The embedding cache (genretag.cache): what counts as a hit, what is stored, and that the
file survives concurrent writers, kill -9 during writes, corruption and read-only places.

Processes are real: writers are ``python -c`` children on the same cache file, killed with
SIGKILL at random points of their put loop. Nothing here needs torch or audio: the cached
"audio files" are small files whose size and mtime are what the cache looks at.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from genretag import cache as cache_mod
from genretag.cache import (APPLICATION_ID, QUERY_CHUNK, SCHEMA_VERSION, CachedEmbedding,
                            CacheRecord, EmbeddingCache, default_cache_path,
                            normalize_slices_key)

from .conftest import zero_audio_keeping_identity

SHA = "ab" * 32
OTHER_SHA = "cd" * 32
DIM = 1506


def emb(n: int = 10, *, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """A float32 embedding [n, dim] with values over several orders of magnitude."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, dim)) * 10.0 ** rng.integers(-3, 3, (n, dim))).astype(np.float32)


def starts(n: int = 10) -> np.ndarray:
    return np.arange(n, dtype=np.float64) * 3.0


def track(folder: Path, name: str = "song.mp3", content: bytes = b"ID3 fake audio") -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def put(cache: EmbeddingCache, path, e=None, *, slices_key=10, **kw) -> bool:
    e = emb() if e is None else e
    args = {"padded": False, "silent": False, "slices_key": slices_key, **kw}
    return cache.put(path, e, starts(len(e)), **args)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "genretag" and r.levelno == logging.WARNING]


@pytest.fixture
def cache_path(tmp_path) -> Path:
    return tmp_path / "cache" / "embeddings.sqlite"


# -- hits and misses -------------------------------------------------------------------------

def test_hit_returns_what_was_put(tmp_path, cache_path):
    song = track(tmp_path)
    e = emb(7, seed=1)
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert cache.get(song, slices_key=10) is None
        assert cache.put(song, e, starts(7) + 0.5, padded=True, silent=False, slices_key=10)
        hit = cache.get(song, slices_key=10)
    assert isinstance(hit, CachedEmbedding)
    assert hit.embedding.dtype == np.float16 and hit.embedding.shape == (7, DIM)
    assert np.array_equal(hit.embedding, e.astype(np.float16))
    assert hit.starts.dtype == np.float64 and list(hit.starts) == list(starts(7) + 0.5)
    assert (hit.padded, hit.silent, hit.slices_key, hit.n_slices) == (True, False, "10", 7)
    assert hit.as_float32().dtype == np.float32
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:  # persisted
        assert np.array_equal(cache.get(str(song), slices_key=10).embedding, hit.embedding)


def test_path_forms_are_one_identity(tmp_path, cache_path, monkeypatch):
    song = track(tmp_path, "é – ü.flac")
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert put(cache, str(song))
        monkeypatch.chdir(tmp_path)
        relative_bytes = b"./\xc3\xa9 \xe2\x80\x93 \xc3\xbc.flac"
        for form in (song, os.fsencode(song), "é – ü.flac", relative_bytes):
            assert cache.get(form, slices_key=10) is not None, form
        assert len(cache) == 1


@pytest.mark.parametrize("change", ["size", "mtime", "path", "backbone", "slices_key"])
def test_miss_after_a_change(tmp_path, cache_path, change):
    song = track(tmp_path)
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert put(cache, song)
    sha, key, target = SHA, 10, song
    if change == "size":
        song.write_bytes(song.read_bytes() + b"!")
        os.utime(song, ns=(song.stat().st_atime_ns, song.stat().st_mtime_ns))
    elif change == "mtime":
        st = song.stat()
        os.utime(song, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    elif change == "path":
        target = tmp_path / "copy.mp3"
        target.write_bytes(song.read_bytes())
        os.utime(target, ns=(song.stat().st_atime_ns, song.stat().st_mtime_ns))
    elif change == "backbone":
        sha = OTHER_SHA
    else:
        key = None
    with EmbeddingCache(cache_path, backbone_sha256=sha) as cache:
        assert cache.get(target, slices_key=key) is None
        assert put(cache, target, emb(seed=5), slices_key=key)  # replaces, or adds a new path
        assert np.array_equal(cache.get(target, slices_key=key).embedding,
                              emb(seed=5).astype(np.float16))
        assert len(cache) == (2 if change == "path" else 1)


def test_same_size_and_mtime_is_a_hit_even_if_the_bytes_differ(tmp_path, cache_path):
    """The identity is (path, size, mtime_ns): what issue 11's no-decode test relies on."""
    song = track(tmp_path)
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert put(cache, song)
        zero_audio_keeping_identity(song)
        assert cache.get(song, slices_key=10) is not None


def test_restamp_keeps_the_entry_of_a_file_whose_tags_were_rewritten(tmp_path, cache_path):
    song = track(tmp_path)
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert put(cache, song)
        before = song.stat()
        song.write_bytes(song.read_bytes() + b"new tag")           # what a tag write does
        assert cache.get(song, slices_key=10) is None               # stale without restamp
        assert cache.restamp(song, before)
        assert np.array_equal(cache.get(song, slices_key=10).embedding,
                              emb().astype(np.float16))
        # a version that is not the one analysed does not move: the audio may differ
        other = song.stat()
        song.write_bytes(song.read_bytes() + b"edited")
        os.utime(song, ns=(other.st_atime_ns, other.st_mtime_ns + 10**9))
        assert not cache.restamp(song, before)
        assert cache.get(song, slices_key=10) is None
        assert not cache.restamp(tmp_path / "gone.mp3", before)


def test_file_changed_during_analysis_is_not_stored(tmp_path, cache_path):
    song = track(tmp_path)
    before = os.stat(song)
    song.write_bytes(b"edited while analysed, longer")
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert not put(cache, song, stat=before)
        assert cache.get(song, slices_key=10) is None and len(cache) == 0
        assert put(cache, song, stat=os.stat(song))
        assert cache.get(song, slices_key=10) is not None


def test_missing_file_is_a_miss_and_is_not_stored(tmp_path, cache_path):
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert not put(cache, tmp_path / "gone.mp3")
        assert cache.get(tmp_path / "gone.mp3", slices_key=10) is None
        assert len(cache) == 0


def test_silent_entry(tmp_path, cache_path):
    song = track(tmp_path, "silence.wav")
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert cache.put(song, None, [0.0, 3.0], padded=False, silent=True, slices_key="all")
        hit = cache.get(song, slices_key=None)
        assert hit.silent and hit.embedding is None and list(hit.starts) == [0.0, 3.0]
        assert hit.as_float32().shape == (0, 0)
        assert cache.stats().silent == 1
        with pytest.raises(ValueError, match="silence.wav"):
            cache.put(song, emb(2), [0.0, 3.0], padded=False, silent=True, slices_key="all")


@pytest.mark.parametrize("bad", [np.zeros(DIM), np.zeros((0, DIM)), np.zeros((3, DIM), int),
                                 np.zeros((2, DIM))])  # the last: 2 slices, 3 starts
def test_wrong_shapes_are_refused(tmp_path, cache_path, bad):
    song = track(tmp_path)
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        with pytest.raises(ValueError, match="song.mp3"):
            cache.put(song, bad, [0.0, 3.0, 6.0], padded=False, silent=False, slices_key=10)
        assert len(cache) == 0


def test_values_beyond_float16_are_not_cached(tmp_path, cache_path, caplog):
    song = track(tmp_path)
    e = emb(2)
    e[1, 5] = 1e6
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert not put(cache, song, e)
        assert len(cache) == 0
    assert len(warnings_of(caplog)) == 1 and "song.mp3" in warnings_of(caplog)[0]


def test_float16_round_trip_precision(tmp_path, cache_path):
    song = track(tmp_path)
    e = emb(10, seed=3)
    e[0, :4] = [0.0, 1e-7, -65504.0, 3e-5]  # zero, subnormal, float16's max, near its normal min
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert put(cache, song, e)
        back = cache.get(song, slices_key=10).as_float32()
    # round to nearest: half a unit in the last place (2**-11 relative), 2**-25 for subnormals
    assert np.all(np.abs(back - e) <= np.maximum(np.abs(e) * 2.0 ** -11, 2.0 ** -25))
    assert np.array_equal(back, e.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("value, key", [(10, "10"), (np.int64(3), "3"), ("7", "7"),
                                        (None, "all"), ("all", "all"), ("auto:10", "auto:10"),
                                        ("auto:07", "auto:7")])
def test_slices_key_forms(value, key):
    assert normalize_slices_key(value) == key


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "some", "auto:0", "auto:", "auto:all"])
def test_bad_slices_keys(value):
    with pytest.raises(ValueError, match="slices_key"):
        normalize_slices_key(value)


def test_backbone_sha256_is_checked(cache_path):
    with pytest.raises(ValueError, match="backbone_sha256"):
        EmbeddingCache(cache_path, backbone_sha256="abc")


# -- many at once, prune, stats -------------------------------------------------------------

def test_get_many_and_put_many(tmp_path, cache_path):
    folder = tmp_path / "lib"
    folder.mkdir()
    songs = [track(folder, f"{i:04d}.ogg", bytes(i % 50 + 1)) for i in range(QUERY_CHUNK * 2 + 7)]
    stored = songs[::2]
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        records = [CacheRecord(p, np.full((2, 8), i, np.float32), [0.0, 3.0], padded=bool(i % 3))
                   for i, p in enumerate(songs) if p in stored]
        assert cache.put_many(records, slices_key=2) == len(stored)
        wanted = songs + [tmp_path / "missing.ogg"]
        got = cache.get_many(wanted, slices_key=2)
    assert list(got) == wanted
    for i, p in enumerate(songs):
        if p in stored:
            assert got[p].embedding.shape == (2, 8) and got[p].embedding[0, 0] == i
            assert got[p].padded == bool(i % 3)
        else:
            assert got[p] is None
    assert got[tmp_path / "missing.ogg"] is None


def test_prune_drops_entries_of_files_gone(tmp_path, cache_path):
    songs = [track(tmp_path, f"{i}.mp3") for i in range(4)]
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        for p in songs:
            assert put(cache, p, emb(1))
        songs[1].unlink()
        assert cache.prune() == 1
        assert len(cache) == 3
        seen = []
        assert cache.prune(exists=lambda p: seen.append(p) or not p.endswith("3.mp3")) == 1
        assert sorted(seen) == sorted(str(p) for p in (songs[0], songs[2], songs[3]))
        assert [cache.get(p, slices_key=10) is not None for p in songs] == [True, False, True, False]


def test_stats(tmp_path, cache_path):
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        put(cache, track(tmp_path, "a.mp3"))
        cache.put(track(tmp_path, "b.mp3"), None, [], padded=False, silent=True, slices_key=10)
    with EmbeddingCache(cache_path, backbone_sha256=OTHER_SHA) as cache:
        put(cache, track(tmp_path, "c.mp3"))
        stats = cache.stats()
    assert (stats.enabled, stats.entries, stats.current, stats.silent) == (True, 3, 1, 1)
    assert stats.bytes_on_disk >= 2 * 10 * DIM * 2 and stats.path == str(cache_path)


def test_undecodable_entry_is_a_miss_and_is_deleted(tmp_path, cache_path):
    a, b = track(tmp_path, "a.mp3"), track(tmp_path, "b.mp3")
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        put(cache, a)
        put(cache, b)
    with sqlite3.connect(cache_path) as db:
        db.execute("UPDATE embeddings SET embedding = substr(embedding, 1, 100) WHERE path = ?",
                   (os.fsencode(a),))
    db.close()
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert cache.get(a, slices_key=10) is None
        assert cache.get(b, slices_key=10) is not None
        assert len(cache) == 1


def test_default_cache_path(monkeypatch, tmp_path):
    import platformdirs

    assert default_cache_path() == Path(platformdirs.user_cache_dir("genretag")) / "embeddings.sqlite"
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # import fails
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / ".cache" / "genretag" / "embeddings.sqlite"


# -- damaged, foreign, old and unwritable cache files --------------------------------------

def _real_cache(path: Path, folder: Path, n: int = 30) -> list[Path]:
    songs = [track(folder, f"t{i}.mp3") for i in range(n)]
    with EmbeddingCache(path, backbone_sha256=SHA) as cache:
        for i, p in enumerate(songs):
            put(cache, p, emb(10, seed=i))
    assert not Path(f"{path}-wal").exists()  # closed cleanly: everything is in the file
    return songs


@pytest.mark.parametrize("damage", ["random bytes", "text file", "truncated", "zeroed pages",
                                    "short header"])
def test_corrupt_cache_is_moved_aside_and_rebuilt(tmp_path, cache_path, caplog, damage):
    cache_path.parent.mkdir()
    songs = _real_cache(cache_path, tmp_path)
    data = cache_path.read_bytes()
    if damage == "random bytes":
        bad = random.Random(0).randbytes(len(data))
    elif damage == "text file":
        bad = b"genre = rock\n" * 100
    elif damage == "truncated":
        bad = data[:len(data) // 2]
    elif damage == "zeroed pages":
        bad = data[:4096] + bytes(len(data) - 4096)
    else:
        bad = data[:60]
    cache_path.write_bytes(bad)

    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        hits = [cache.get(p, slices_key=10) for p in songs]
        assert hits == [None] * len(songs)  # nothing of it is trusted
        assert len(cache) == 0 and cache.enabled
        assert put(cache, songs[0]) and cache.get(songs[0], slices_key=10) is not None
    messages = warnings_of(caplog)
    assert len(messages) == 1, messages
    assert str(cache_path) in messages[0] and "corrupt" in messages[0]
    assert Path(f"{cache_path}.corrupt").read_bytes() == bad
    caplog.clear()
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:  # the rebuilt one is sound
        assert len(cache) == 1
    assert warnings_of(caplog) == []


def test_stale_write_ahead_log_is_moved_aside_with_the_corrupt_file(tmp_path, cache_path, caplog):
    cache_path.parent.mkdir()
    cache_path.write_bytes(b"not a database at all" * 10)
    Path(f"{cache_path}-wal").write_bytes(b"old log")
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert put(cache, track(tmp_path)) and len(cache) == 1
    assert Path(f"{cache_path}.corrupt-wal").read_bytes() == b"old log"
    assert len(warnings_of(caplog)) == 1


def test_unknown_schema_version_is_rebuilt(tmp_path, cache_path, caplog):
    cache_path.parent.mkdir()
    songs = _real_cache(cache_path, tmp_path, n=3)
    db = sqlite3.connect(cache_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 98}")
    db.close()
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert len(cache) == 0 and cache.get(songs[0], slices_key=10) is None
        assert put(cache, songs[0]) and len(cache) == 1
    messages = warnings_of(caplog)
    assert len(messages) == 1 and str(cache_path) in messages[0] and "version 99" in messages[0]
    db = sqlite3.connect(cache_path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


def test_another_programs_database_is_left_untouched(tmp_path, cache_path, caplog):
    cache_path.parent.mkdir()
    db = sqlite3.connect(cache_path)
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT)")
    db.execute("INSERT INTO items VALUES (1, 'precious')")
    db.commit()
    db.close()
    before = cache_path.read_bytes()
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        song = track(tmp_path)
        assert not put(cache, song) and cache.get(song, slices_key=10) is None
        assert not cache.enabled
    assert cache_path.read_bytes() == before and not Path(f"{cache_path}.corrupt").exists()
    messages = warnings_of(caplog)
    assert len(messages) == 1 and str(cache_path) in messages[0]


@pytest.mark.parametrize("existing", [False, True])
def test_read_only_directory_degrades_to_no_cache(tmp_path, caplog, existing):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "embeddings.sqlite"
    songs = _real_cache(path, tmp_path, n=2) if existing else [track(tmp_path)]
    folder.chmod(0o555)
    try:
        with EmbeddingCache(path, backbone_sha256=SHA) as cache:
            assert cache.get(songs[0], slices_key=10) is None
            assert not put(cache, songs[0])
            assert not put(cache, songs[0])
            assert cache.get_many(songs, slices_key=10) == dict.fromkeys(songs)
            assert len(cache) == 0 and cache.prune() == 0 and not cache.stats().enabled
    finally:
        folder.chmod(0o755)
    messages = warnings_of(caplog)
    assert len(messages) == 1, messages
    assert str(path) in messages[0] and "read-only" in messages[0]
    assert sorted(os.listdir(folder)) == (["embeddings.sqlite"] if existing else [])


def test_cache_under_a_regular_file_degrades(tmp_path, caplog):
    """A location the OS refuses whoever we are (root included): its parent is a file."""
    blocker = track(tmp_path, "not-a-dir")
    with EmbeddingCache(blocker / "sub" / "embeddings.sqlite", backbone_sha256=SHA) as cache:
        song = track(tmp_path)
        assert not put(cache, song) and cache.get(song, slices_key=10) is None
    messages = warnings_of(caplog)
    assert len(messages) == 1 and "not-a-dir" in messages[0]


def test_read_only_cache_file_degrades(tmp_path, cache_path, caplog):
    cache_path.parent.mkdir()
    songs = _real_cache(cache_path, tmp_path, n=1)
    cache_path.chmod(0o444)
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert cache.get(songs[0], slices_key=10) is None and not put(cache, songs[0])
    assert len(warnings_of(caplog)) == 1 and "read-only" in warnings_of(caplog)[0]


def test_closed_cache_is_an_empty_one(tmp_path, cache_path):
    cache = EmbeddingCache(cache_path, backbone_sha256=SHA)
    song = track(tmp_path)
    put(cache, song)
    cache.close()
    assert cache.get(song, slices_key=10) is None and not put(cache, song) and len(cache) == 0


# -- processes: concurrent writers, kill -9 -------------------------------------------------

# A writer: put i = first, first+1, ... (forever when count < 0) into the cache, each entry
# derived from i alone, printing i after each put returned. With argv[5] (a file name prefix)
# and argv[6] (N), it marks itself ready and waits until N writers are, before opening the
# cache, so that they start together.
WRITER = textwrap.dedent("""
    import logging, os, sys, time
    import numpy as np
    from genretag.cache import EmbeddingCache
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    path, folder, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if len(sys.argv) > 5:
        ready, n_writers = sys.argv[5], int(sys.argv[6])
        open(ready + "." + str(os.getpid()), "w").close()
        while len([f for f in os.listdir(os.path.dirname(ready))
                   if f.startswith(os.path.basename(ready) + ".")]) < n_writers:
            time.sleep(0.001)
    files = sorted(os.listdir(folder))
    with EmbeddingCache(path, backbone_sha256="{sha}") as cache:
        i = first
        while count < 0 or i < first + count:
            n = 1 + (i * 7) % 40
            e = np.random.default_rng(i).standard_normal((n, {dim})).astype(np.float32)
            ok = cache.put(os.path.join(folder, files[i % len(files)]), e,
                           np.arange(n) * 3.0 + i, padded=False, silent=False, slices_key=10)
            assert ok, i
            print(i, flush=True)
            i += 1
""").format(sha=SHA, dim=DIM)


def writer(cache_path: Path, folder: Path, first: int, count: int,
           barrier: tuple[Path, int] | None = None):
    args = [sys.executable, "-c", WRITER, str(cache_path), str(folder), str(first), str(count)]
    if barrier is not None:
        args += [str(barrier[0]), str(barrier[1])]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check_sound(cache_path: Path, folder: Path, written_last: dict[str, int] | None = None) -> int:
    """Assert the cache file is intact and every row is exactly one of the writers' puts.

    ``written_last`` maps file names to the last put that returned for them: the row must be
    that put or a later one (a put that committed just before its writer was killed).
    Returns the number of rows.
    """
    db = sqlite3.connect(cache_path)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    rows = db.execute("SELECT path, n_slices, dim, starts, embedding FROM embeddings").fetchall()
    db.close()
    for path, n, dim, starts_blob, blob in rows:
        first_start = np.frombuffer(starts_blob, "<f8")
        i = int(first_start[0])
        assert (n, dim) == (1 + (i * 7) % 40, DIM) and len(first_start) == n
        expected = np.random.default_rng(i).standard_normal((n, DIM)).astype(np.float32)
        expected = expected.astype(np.float16)
        assert np.array_equal(np.frombuffer(blob, "<f2").reshape(n, dim), expected)
        name = os.path.basename(os.fsdecode(path))
        if written_last is not None and name in written_last:
            assert i >= written_last[name]
    return len(rows)


def test_two_processes_writing_the_same_cache(tmp_path, cache_path):
    folder = tmp_path / "lib"
    folder.mkdir()
    for i in range(40):
        track(folder, f"{i:02d}.mp3", bytes(i + 1))
    # Both start from a missing cache file at once (creation race), then write the same
    # 40 files, each 60 times in all, interleaved.
    procs = [writer(cache_path, folder, first, 60, barrier=(tmp_path / "ready", 2))
             for first in (0, 1000)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert err == "", err  # no warning: the cache was never disabled nor rebuilt
        assert len(out.split()) == 60
    assert check_sound(cache_path, folder) == 40
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert len(cache) == 40


@pytest.mark.parametrize("round_", range(3))
def test_processes_creating_the_cache_at_once(tmp_path, round_):
    """Switching a new file to WAL mode does not wait for other processes: the cache must."""
    folder = tmp_path / "lib"
    folder.mkdir()
    track(folder)
    cache_path = tmp_path / "new" / "embeddings.sqlite"
    procs = [writer(cache_path, folder, first, 1, barrier=(tmp_path / "ready", 4))
             for first in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert (p.returncode, err) == (0, ""), err
    assert check_sound(cache_path, folder) == 1


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_during_writes_leaves_a_sound_cache(tmp_path, cache_path, caplog):
    folder = tmp_path / "lib"
    folder.mkdir()
    for i in range(25):
        track(folder, f"{i:02d}.mp3", bytes(i + 1))
    names = sorted(os.listdir(folder))
    rng = random.Random(11)
    written_last: dict[str, int] = {}
    first = 0
    for _ in range(15):
        child = writer(cache_path, folder, first, -1)
        wanted, done = rng.randint(1, 30), 0
        for line in child.stdout:  # kill at a random point of the put loop
            i = int(line)
            written_last[names[i % len(names)]] = i
            done += 1
            if done == wanted:
                os.kill(child.pid, signal.SIGKILL)
                break
        child.wait()
        assert child.returncode == -signal.SIGKILL, child.stderr.read()
        child.stdout.close()
        child.stderr.close()
        first += 1000
    assert Path(f"{cache_path}-wal").exists()  # killed: nothing was closed or checkpointed

    assert check_sound(cache_path, folder, written_last) == len(written_last)
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        got = cache.get_many([folder / n for n in written_last], slices_key=10)
        assert all(v is not None for v in got.values())
    assert warnings_of(caplog) == []  # a killed writer's cache is not mistaken for a corrupt one


def test_forked_child_opens_its_own_connection(tmp_path, cache_path):
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    songs = [track(tmp_path, f"{i}.mp3") for i in range(2)]
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        put(cache, songs[0])
        pid = os.fork()
        if pid == 0:  # child: use the inherited instance, then leave without cleanup
            code = 0 if cache.get(songs[0], slices_key=10) is not None and put(cache, songs[1]) else 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert cache.get(songs[1], slices_key=10) is not None and len(cache) == 2
    check_sound_rows = sqlite3.connect(cache_path)
    assert check_sound_rows.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    check_sound_rows.close()


def test_module_imports_neither_torch_nor_av():
    out = subprocess.run([sys.executable, "-c", "import sys, genretag.cache; "
                          "print(sorted(m for m in ('torch', 'av') if m in sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert cache_mod.__doc__ and "10 000 tracks" in cache_mod.__doc__


def test_a_lookup_may_accept_several_slice_settings(tmp_path, cache_path):
    """An adaptive analysis may be read where a fixed one is asked for, not the reverse."""
    song = track(tmp_path, "a.mp3")
    with EmbeddingCache(cache_path, backbone_sha256=SHA) as cache:
        assert put(cache, song, emb(4), slices_key="auto:10")
        assert cache.get(song, slices_key=10) is None
        hit = cache.get(song, slices_key=("auto:10", 10))
        assert hit is not None and hit.slices_key == "auto:10" and hit.n_slices == 4
        assert put(cache, song, emb(10), slices_key=10)  # replaces the row: one per file
        assert len(cache) == 1
        assert cache.get(song, slices_key=("auto:10", "10")).slices_key == "10"
        assert cache.get(song, slices_key=("auto:5", 5)) is None
