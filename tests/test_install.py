"""A non-editable install (a wheel, as ``pip install --user`` makes) finds its weights."""
import os
import subprocess
import sys

from .conftest import REPO


def test_wheel_install_ships_code_plugin_and_weights(tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(REPO)], check=True, timeout=600,
                   cwd=tmp_path, capture_output=True)
    wheel, = wheels.glob("genretag-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, timeout=600, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("GENRETAG_WEIGHTS", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    code = ("import genretag, beetsplug.genretag; from genretag.model import model_dir, "
            "read_model_id; print(genretag.__file__); print(model_dir()); "
            "print(model_dir(vocabulary='lastfm')); print(read_model_id()); "
            "print(read_model_id(vocabulary='lastfm'))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    module, weights, lastfm, model_id, lastfm_id = proc.stdout.splitlines()
    assert module.startswith(str(site))  # the installed copy, not this checkout
    assert weights == str(site / "genretag" / "weights")
    assert lastfm == str(site / "genretag" / "weights" / "lastfm")
    assert model_id.startswith("genretag-") and lastfm_id.startswith("genretag-")
    assert model_id != lastfm_id
