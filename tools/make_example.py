"""Write the bundled example clip, ``examples/example.mp3`` (synthetic, a few hundred KB)."""
from pathlib import Path

from genretag.encode import write
from genretag.synthetic import synth_music

if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "examples" / "example.mp3"
    write(synth_music(15.0, 22050, seed=7, tempo_bpm=96), 22050, out, bit_rate=96000)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
