"""Build a ``pagelens eval locate`` gold set from the receipts development set (../shared/corpus/receipts):
each labelled key field → its value and box in page fractions (alternatives kept; dates match by the box's
centre, since their gold boxes are whole OCR lines). ``--absent`` adds, per receipt, another receipt's company
name with ``box: null``: a value that is not on the page, which must come back unverified.

    python eval/receipts_gold.py [--set ../shared/corpus/receipts] [--limit N] [--absent] > receipts.jsonl
    python eval/receipts_gold.py --extract [--limit N] > receipts_extract.jsonl   # for `pagelens eval extract`
    python eval/receipts_gold.py --extract --half a > fit.jsonl   # every other receipt: `pagelens calibrate fit`
                                                                                  # --schema eval/receipt.schema.json

The receipts are not redistributed with PageLens: the gold is built from the local copy when needed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pymupdf

DEFAULT_SET = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "receipts"


def receipts_gold(root: Path, limit: int | None = None, absent: bool = False) -> list[dict]:
    files = sorted((root / "fields").glob("*.json"))[:limit]
    records = [json.loads(f.read_text()) for f in files]
    out = []
    for n, g in enumerate(records):
        img = root / "img" / f"{g['id']}.jpg"
        pix = pymupdf.Pixmap(str(img))  # gold boxes are in image pixels
        w, h = pix.width, pix.height

        def frac(b: list[float], w: float = w, h: float = h) -> list[float]:
            return [b[0] / w, b[1] / h, b[2] / w, b[3] / h]

        for name, v in g["fields"].items():
            if not v.get("box"):
                continue
            out.append({"id": f"{g['id']}/{name}", "doc": img.name, "page": 1, "value": v["value"],
                        "box": frac(v["box"]), "alternatives": [frac(b) for b in v.get("alternatives", [])],
                        "match": "centre" if name == "date" else "iou", "field": name})
        if absent and len(records) > 1:
            other = records[(n + len(records) // 2) % len(records)]["fields"].get("company", {}).get("value")
            if other and other != g["fields"].get("company", {}).get("value"):
                out.append({"id": f"{g['id']}/absent", "doc": img.name, "page": 1, "value": other, "box": None,
                            "field": "absent"})
    return out


def receipts_extract_gold(root: Path, limit: int | None = None) -> list[dict]:
    """One line per receipt: the four key fields as ``data`` and their gold boxes (page 1, fractions)."""
    by_receipt: dict[str, dict] = {}
    for row in receipts_gold(root, limit):
        rid, name = row["id"].split("/")
        g = by_receipt.setdefault(rid, {"id": rid, "doc": row["doc"], "data": {}, "boxes": {}})
        g["data"][name] = row["value"]
        g["boxes"][name] = {"page": 1, "box": row["box"]}
    return list(by_receipt.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", type=Path, default=DEFAULT_SET)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--absent", action="store_true")
    ap.add_argument("--extract", action="store_true", help="gold for `pagelens eval extract` (one line a receipt)")
    ap.add_argument("--half", choices=("a", "b"), help="every other receipt (a: 1st, 3rd, ...; b: 2nd, 4th, ...): "
                    "fit a calibration profile on one half, evaluate on the other")
    args = ap.parse_args()
    rows = receipts_extract_gold(args.set, args.limit) if args.extract else receipts_gold(args.set, args.limit,
                                                                                         args.absent)
    if args.half:
        ids = sorted({r["id"].split("/")[0] for r in rows})
        keep = set(ids[0 if args.half == "a" else 1::2])
        rows = [r for r in rows if r["id"].split("/")[0] in keep]
    for item in rows:
        sys.stdout.write(json.dumps(item) + "\n")


if __name__ == "__main__":
    main()
