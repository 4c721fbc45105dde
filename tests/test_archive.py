"""Archive scale with Ray Data (genretag.archive): rows equal the CLI's, resume, kills."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from genretag.encode import write
from genretag.synthetic import synth_music

from .conftest import FORMATS

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from genretag import archive  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance with 2 CPUs for the module; jobs run in-process use it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> tuple[Path, list[str], list[str]]:
    """A folder (with a sub-folder) of generated audio in every format plus broken files.

    Returns the folder, the good files and the others (absolute paths, as strings): three
    that cannot be decoded, then a silent one.
    """
    root = tmp_path_factory.mktemp("archive library")
    sub = root / "sub dir ü"
    sub.mkdir()
    good = []
    for i, ext in enumerate(FORMATS):
        path = (root if i % 2 else sub) / f"track {i}{ext}"
        write(synth_music(5.0, 44100, seed=10 + i, channels=2), 44100, path)
        good.append(str(path))
    broken = [root / "random bytes.mp3", root / "empty.flac", root / "notes.ogg",
              root / "silence.wav"]
    broken[0].write_bytes(np.random.default_rng(0).bytes(20_000))
    broken[1].write_bytes(b"")
    broken[2].write_text("not audio\n" * 100)
    write(np.zeros(22050 * 4, np.float32), 22050, broken[3])
    (root / "cover.jpg").write_bytes(b"\xff\xd8 not audio, not walked")
    return root, good, [str(p) for p in broken]


def cli_json(paths: list[str]) -> dict[str, dict]:
    proc = subprocess.run([sys.executable, "-m", "genretag.cli", "classify", "--json", "-j", "2",
                           *paths], capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    return {d["path"]: d for d in map(json.loads, proc.stdout.splitlines())}


def parts(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}


def test_rows_equal_the_cli_and_a_rerun_adds_nothing(local_ray, library, tmp_path):
    root, good, broken = library
    out = tmp_path / "out"
    log: list[str] = []
    status = archive.run_job([str(root)], out_dir=out, jobs=2, chunk_size=2, log=log.append)
    assert status == 1  # some files failed, and each is a row
    rows = list(archive.read_results(out))
    paths = [r["path"] for r in rows]
    assert sorted(paths) == sorted(good + broken)  # one row per input, nothing else
    cli = cli_json(good + broken)
    assert {r["path"]: r for r in rows} == cli
    failed = sorted(p for p, d in cli.items() if "error" in d)
    assert set(broken[:3]) <= set(failed)
    assert log[-1].startswith(f"genretag: {len(cli) - len(failed)} done, {len(failed)} failed, "
                              "0 skipped")
    assert not any(n.startswith(".part") or n == ".genretag-work" for n in os.listdir(out))

    before = parts(out)
    log.clear()
    assert archive.run_job([str(root)], out_dir=out, jobs=2, log=log.append) == 0
    assert parts(out) == before
    assert log[-1].startswith(f"genretag: 0 done, 0 failed, {len(good) + len(broken)} skipped")


def test_manifest_lines_are_streamed_deduplicated_and_resumed(local_ray, library, tmp_path):
    root, good, broken = library
    out = tmp_path / "out"
    extra = tmp_path / "new track.flac"
    write(synth_music(4.0, 22050, seed=99), 22050, extra)
    manifest = tmp_path / "manifest.txt"
    rel = os.path.relpath(good[0])  # relative lines are taken from the current directory
    manifest.write_text("\n".join([good[0], rel, good[1], "", broken[0]]) + "\n",
                        encoding="utf-8")
    log: list[str] = []
    assert archive.run_job([], manifest=manifest, out_dir=out, jobs=1, log=log.append) == 1
    assert sorted(r["path"] for r in archive.read_results(out)) == sorted(good[:2] + broken[:1])
    assert log[-1].startswith("genretag: 2 done, 1 failed, 1 skipped")  # the duplicate line

    manifest.write_text("\n".join(good[:2] + broken[:1] + [str(extra)]), encoding="utf-8")
    log.clear()
    assert archive.run_job([], manifest=manifest, out_dir=out, jobs=2, log=log.append) == 0
    assert log[-1].startswith("genretag: 1 done, 0 failed, 3 skipped")
    rows = list(archive.read_results(out))
    assert sorted(r["path"] for r in rows) == sorted(good[:2] + broken[:1] + [str(extra)])


def test_other_model_id_is_not_skipped(local_ray, library, tmp_path):
    """Rows of another model do not count as done (the resume key is path + model id)."""
    root, good, _ = library
    out = tmp_path / "out"
    out.mkdir()
    other = "some-other-model/0.1"
    archive.write_part(out, [{"path": good[0], "genre": "rock", "confidence": 0.9,
                              "probs": [("rock", 0.9), ("pop", 0.1)], "genres": None,
                              "padded": False, "silent": False, "model": other,
                              "error": None}], other)
    log: list[str] = []
    assert archive.run_job([good[0]], out_dir=out, jobs=1, log=log.append) == 0
    assert log[-1].startswith("genretag: 1 done, 0 failed, 0 skipped")
    models = sorted(r.get("model") for r in archive.read_results(out))
    from genretag.model import read_model_id

    assert models == sorted([read_model_id(), other])


def test_manifest_lines_become_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = tmp_path / "m.txt"
    manifest.write_text("a b.mp3\r\n\n/abs/c.flac\nfile:///x/y%20z.ogg\nhttps://host/d.mp3\n",
                        encoding="utf-8")
    assert list(archive.iter_inputs([], manifest)) == [
        str(tmp_path / "a b.mp3"), "/abs/c.flac", "/x/y z.ogg", "https://host/d.mp3"]


def _session_processes(session: str) -> list[int]:
    """Pids of processes whose command line or open files name Ray session ``session``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            named = session.encode() in (entry / "cmdline").read_bytes()
            named = named or any(session in os.readlink(fd) for fd in (entry / "fd").iterdir())
        except OSError:
            continue
        if named:
            pids.append(int(entry.name))
    return pids


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_killed_job_completes_on_rerun_with_every_path_once(local_ray, library, tmp_path):
    root, good, broken = library
    more = tmp_path / "more"
    more.mkdir()
    for i in range(10):
        write(synth_music(4.0, 22050, seed=200 + i), 22050, more / f"extra {i}.wav")
    out = tmp_path / "out"
    code = ("import sys; from genretag.archive import run_job; "
            f"sys.exit(run_job({[str(root), str(more)]!r}, out_dir={str(out)!r}, jobs=2, "
            "chunk_size=1))")
    # Its own local Ray instance, as `genretag classify --ray` alone starts.
    stderr = tmp_path / "driver.log"
    with open(stderr, "wb") as err:
        driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                  stderr=err, start_new_session=True)
    session = None
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("part-*.parquet")):
            assert driver.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "no part written in 300 s"
            time.sleep(0.1)
        sessions = sorted(Path("/tmp/ray").glob(f"session_*_{driver.pid}"))
        session = sessions[-1].name if sessions else None
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        # Ray reaps a killed driver's workers, but its agents stay: end everything that
        # driver started (its process group, and whatever still uses its session).
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in _session_processes(session) if session else ():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 30  # SIGKILL is not instant: wait for them to be gone
    while session and _session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (session and _session_processes(session))

    written = len(list(out.glob("part-*.parquet")))  # one path each (chunk_size=1)
    expected = sorted(good + broken + [str(p) for p in sorted(more.iterdir())])
    assert 1 <= written < len(expected)

    # The exit status speaks of this run: 1 if an undecodable file was left for it to
    # fail on (the silent one, broken[3], is a row without an error: never a failure).
    failed_before = {r["path"] for r in archive.read_results(out) if r.get("error")}
    log: list[str] = []
    status = archive.run_job([str(root), str(more)], out_dir=out, jobs=1, log=log.append)
    assert status == (1 if set(broken[:3]) - failed_before else 0)
    paths = [r["path"] for r in archive.read_results(out)]
    assert sorted(paths) == expected  # every path exactly once
    assert f" {written} skipped" in log[-1]


def test_a_killed_worker_is_replaced_and_its_chunk_redone(local_ray, library, tmp_path):
    """SIGKILL to an actor mid-job: Ray restarts it, the chunk is redone, no row twice."""
    import threading

    root, good, broken = library
    session = Path(ray._private.worker.global_worker.node.get_session_dir_path()).name
    out = tmp_path / "out"
    log: list[str] = []
    status = []
    job = threading.Thread(target=lambda: status.append(archive.run_job(
        [str(root)], out_dir=out, jobs=2, chunk_size=1, log=log.append)))
    job.start()
    killed = None
    try:
        while job.is_alive() and killed is None:
            if list(out.glob("part-*.parquet")):
                workers = [pid for pid in _session_processes(session)
                           if _cmdline(pid).startswith(b"ray::MapWorker")]
                if workers:
                    killed = workers[0]
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
    finally:
        job.join()
    assert killed is not None, "the job ended before a worker could be killed"
    assert status == [1]  # the broken files
    paths = [r["path"] for r in archive.read_results(out)]
    assert sorted(paths) == sorted(good + broken)
    assert not any("chunks failed" in line for line in log)  # Ray's own retry did it


def _cli_has_ray() -> bool:
    import contextlib
    import io

    from genretag.cli import build_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["classify", "--ray", "local", "--out", "x", "f.mp3"])
    except SystemExit:
        return False
    return True


@pytest.mark.skipif(not _cli_has_ray(), reason="genretag classify has no --ray yet")
def test_cli_runs_the_job_on_a_running_cluster(local_ray, library, tmp_path):
    root, good, broken = library
    manifest = tmp_path / "paths.txt"
    manifest.write_text("\n".join(broken) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "genretag.cli", "classify", "--ray", local_ray, "--out",
           str(out), "-j", "1", "--manifest", str(manifest), *good]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert sorted(r["path"] for r in archive.read_results(out)) == sorted(good + broken)
    assert " skipped in " in proc.stderr.splitlines()[-1]
    usage = subprocess.run([sys.executable, "-m", "genretag.cli", "classify", "--out",
                            str(out), good[0]], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "--ray" in usage.stderr


def test_without_ray_it_says_how_to_install_and_exits_2(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from genretag.archive import run_job; "
            f"sys.exit(run_job(['x.mp3'], out_dir={str(tmp_path)!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "pip install 'genretag[ray]'" in proc.stderr
    assert not os.listdir(tmp_path)


def test_importing_the_module_imports_neither_ray_nor_pyarrow():
    code = ("import sys, genretag.archive, genretag.cli; "
            "print(sorted(m for m in ('ray', 'pyarrow', 'torch') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_bad_weights_fail_before_any_work(tmp_path, library):
    root, good, _ = library
    log: list[str] = []
    status = archive.run_job([good[0]], out_dir=tmp_path / "out", weights_dir=tmp_path / "none",
                             log=log.append)
    assert status == 1
    assert str(tmp_path / "none") in log[-1]
    assert not (tmp_path / "out").exists()
