from pathlib import Path

from setuptools import find_namespace_packages, find_packages, setup

# The shipped weights are package data of `genretag.weights` (the repository's weights/
# folder), so every kind of install finds them next to the code.
WEIGHT_PACKAGES = ["genretag.weights"] + [
    "genretag.weights." + p.name for p in sorted(Path("weights").iterdir()) if p.is_dir()]

setup(
    name="genretag",
    version="1.0.0",
    description="Tag a music collection's genres from the audio (library, CLI and beets plugin)",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["genretag", "genretag.*"])
    + find_namespace_packages(include=["beetsplug", "beetsplug.*"]) + WEIGHT_PACKAGES,
    package_dir={"genretag.weights": "weights"},
    package_data={p: ["*.json", "*.md", "*.safetensors"] for p in WEIGHT_PACKAGES},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "torch>=2.1,<2.14",
        "av>=12",
        "soundfile>=0.12",
        "safetensors>=0.4",
        "tqdm>=4.60",
    ],
    extras_require={
        "beets": ["beets>=2.7"],
        "plots": ["matplotlib>=3.6"],
        # Ray Data takes actor retry options only through ray_remote_args, due to go in 2.64.
        "ray": ["ray[data]>=2.60,<2.64", "pyarrow>=14"],
        "test": ["pytest>=7", "pytest-xdist>=3.5", "librosa>=0.10", "mutagen>=1.45",
                 "beets>=2.7", "pyyaml", "matplotlib>=3.6", "ray[data]>=2.60,<2.64",
                 "pyarrow>=14"],
    },
    entry_points={"console_scripts": ["genretag = genretag.cli:main"]},
    license="MIT",
)
