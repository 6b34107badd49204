"""The newcomer's first run: make a small sample PDF (born-digital pages and one scanned page), ingest it, and
search it — on the embedded defaults, no server, no GPU."""

from __future__ import annotations

from pathlib import Path

SAMPLE_PAGES = [
    ("PageLens sample: quarterly report",
     "Revenue grew 12 percent in the third quarter, driven by document intelligence subscriptions. "
     "Operating costs fell as the ingestion pipeline moved to embedded Qdrant Edge storage."),
    ("Invoice INV-2041",
     "Bill to: Example Corp, 1 Harbour Street. Item: annual support plan. Quantity 1. Unit price 4,800.00 EUR. "
     "Total due 4,800.00 EUR by 30 November 2026."),
    ("Scanned memo (image only)",
     "Memo: the archive of signed contracts was scanned in October. Optical character recognition makes "
     "every scanned contract searchable."),
]


SAMPLE_METADATA = {"title": "PageLens sample", "creator": "pagelens demo", "producer": "pagelens demo",
                   "creationDate": "D:20260101000000Z", "modDate": "D:20260101000000Z"}


def make_sample_pdf(path: Path) -> Path:
    """Write a 3-page PDF: two text pages and one image-only page (as a scanner makes), for OCR.

    The bytes are the same on every run (fixed metadata, no file id, no timestamps), so the sample keeps one
    ``doc_id`` and running the demo again reports it ``unchanged``."""
    from store.mupdf import pymupdf

    doc = pymupdf.open()
    for i, (title, body) in enumerate(SAMPLE_PAGES):
        page = doc.new_page(width=612, height=792)
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 120), title, fontsize=20)
        page.insert_textbox(pymupdf.Rect(72, 140, 540, 400), body, fontsize=13)
        if i == len(SAMPLE_PAGES) - 1:  # flatten this page into an image: no text layer left
            png = page.get_pixmap(dpi=150).tobytes("png")
            doc.delete_page(i)
            scan = doc.new_page(width=612, height=792)
            scan.insert_image(scan.rect, stream=png)
    doc.set_metadata(SAMPLE_METADATA)
    path.parent.mkdir(parents=True, exist_ok=True)
    # no_new_id: the trailer /ID would be random; garbage/deflate keep the file small and its layout fixed
    doc.save(path, garbage=3, deflate=True, no_new_id=True)
    return path
