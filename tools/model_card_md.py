"""Render weights/MODEL_CARD.md from weights/model_card.json (the card the code reads).

Usage: ``python tools/model_card_md.py tools/model_card_intro.md``"""
import json
import sys
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def fold_table(res: dict, classes: list[str]) -> list[str]:
    lines = ["| fold | accuracy | balanced acc. | 8 kHz-limited acc. | " +
             " | ".join(f"{c} recall (n)" for c in classes) + " |",
             "|---" * (4 + len(classes)) + "|"]
    for f in res["folds"]:
        m = f["metrics"]
        cells = [f"{m['per_class_recall'][c]:.2f} ({m['support'][c]})" if m["support"][c]
                 else "– (0)" for c in classes]
        lines.append(f"| {f['fit']} → {f['scored']} | {m['accuracy']:.3f} | "
                     f"{m['balanced_accuracy']:.3f} | {f['metrics_band8k']['accuracy']:.3f} | "
                     + " | ".join(cells) + " |")
    lines.append(f"| **mean** | **{res['mean']['accuracy']:.3f}** | "
                 f"**{res['mean']['balanced_accuracy']:.3f}** | "
                 f"{res['mean_band8k']['accuracy']:.3f} |" + " |" * len(classes))
    return lines


def confusion(res: dict, classes: list[str]) -> list[str]:
    out = []
    for f in res["folds"]:
        out += ["", f"{f['fit']} → {f['scored']} (rows: true genre, columns: predicted)", "",
                "| | " + " | ".join(c[:5] for c in classes) + " |", "|---" * (len(classes) + 1)
                + "|"]
        for c, row in zip(classes, f["metrics"]["confusion"]):
            out.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    return out


def render(card: dict, extra: str) -> str:
    classes = card["classes"]
    files = "\n".join(f"- `{f['path']}` sha256 `{f['sha256']}`" for f in card["files"])
    lines = [f"# Model card: {card['model_id']} {card['version']}", "", extra.strip(), "",
             "## Files", "", files, "", "## Input features", "",
             "```json", json.dumps(card["features"], indent=1), "```", "",
             "## Training", "", "```json", json.dumps(card["training"], indent=1), "```", "",
             "## Validation (track level, two artist-disjoint folds)", ""]
    for arch, res in card["metrics"].items():
        lines += [f"### {arch}", ""] + fold_table(res, classes)
        lines += ["", "Accuracy when only k evenly spread slices of each 30-s clip are used "
                  "(clean audio): " + "; ".join(
                      f"{f['fit']}→{f['scored']}: " + ", ".join(
                          f"k={k}: {v:.3f}" for k, v in f["reduced_slices"].items())
                      for f in res["folds"])]
        lines += confusion(res, classes) + [""]
    for p in card["provenance"]:
        lines += [f"## Third-party part: {p['name']}", "", f"- Source: {p['source']}",
                  f"- Paper: {p['paper']}", f"- Trained on: {p['trained_on']}",
                  f"- Conversion: {p['conversion']}", f"- Licence: {p['licence']}", "",
                  "> " + p["licence_text"], ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    card = json.loads((WEIGHTS / "model_card.json").read_text())
    extra = Path(sys.argv[1]).read_text() if len(sys.argv) > 1 else ""
    (WEIGHTS / "MODEL_CARD.md").write_text(render(card, extra))
    print("wrote", WEIGHTS / "MODEL_CARD.md")
