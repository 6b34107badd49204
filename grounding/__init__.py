"""The verifier: a value found on the page it was cited on, by its characters, and the boxes of exactly those
characters. No model, no store: the page's words (``schemas.wordtable.WordTable``) in, statuses and boxes out.

- ``verifier``: ``locate`` (exact, inside words, fuzzy; near the model's box; every candidate of an ambiguous value)
- ``charstream``: the page's words as one normalised character stream, each character mapped back to its word
- ``layout``: the column order of table cells (a value stacked in one cell, skipping the other columns' words)
- ``normalise``: case, accents, spacing, punctuation, currency, numbers, dates and OCR confusions
- ``calibration``: a field's evidence mapped to the probability that its value is right (fitted profiles)

It sits on the floor beside ``schemas``: the pipelines above it (``vlm``, ``app``) use it; it imports none of them.
"""
