"""Prompts, in one place (their hash is recorded with every extraction)."""

from __future__ import annotations

import hashlib

SYSTEM = ("You read document page images and answer only from what they show. You never invent facts. "
          "You reply with JSON only.")

NOT_FOUND = "Not found in these documents."

ASK = (
    "Question: {question}\n\n"
    "Answer from the {n} page image(s) above only. If they do not contain the answer, set found to false and "
    "answer with an empty string. Otherwise give a short answer and, as evidence, the exact words from the page "
    "that support it: the page image number, a verbatim quote, and its box. {boxes}"
)

CAPTION = (
    "Describe this page in a short factual caption: what kind of page it is, its title, the key entities "
    "(names, organisations, products, dates, amounts), and what any figure or table shows. No speculation."
)

EXTRACT = (
    "Extract the fields of the JSON schema from the {n} page image(s) above. For every field give its value "
    "exactly as written on the page (normalise only numbers and dates to the schema's type), the number of the "
    "page image it is on, and its box. {boxes} If a field is not on any page, give null as its value when the "
    "schema allows it, else your best reading, and a null box."
)


REWRITE = (
    "Here is a conversation about some documents, then a follow-up question.\n\n{history}\n\n"
    "Follow-up question: {question}\n\n"
    "Rewrite the follow-up as one standalone question that can be understood without the conversation: replace "
    "pronouns and references (it, that, the second one, what about ...) with what they refer to, and keep "
    "everything else as asked. If it already stands alone, give it unchanged. Do not answer it."
)

def prompt_hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]
