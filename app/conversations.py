"""Conversations over the documents: each question is rewritten with the history into a standalone one (by the
VLM), answered as ``ask`` answers it, and kept in the catalog with its citations frozen as answered (document id
and name, page, box, the document's words version). Shown again, a citation whose document is gone or was read
again since says so; its box is the one it had.

A conversation belongs to the key that started it (and admins see every one); it asks in one collection or in
every collection of that key, and each turn runs as the key asking, with its scope as it is now."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from schemas.access import Principal
from schemas.answers import Answer
from schemas.conversations import (
    CITATION_NOTES,
    MAX_TITLE,
    Citation,
    CitationState,
    Conversation,
    ConversationInfo,
    Turn,
)
from schemas.documents import Document
from schemas.errors import InputError, ModelBehaviorError, NotFound
from schemas.names import check_name

if TYPE_CHECKING:
    from app.service import Service

log = logging.getLogger(__name__)
MAX_QUESTION = 1000


def owner_of(who: Principal) -> str | None:
    """Whose conversations ``who`` sees: its own, or every one for an admin key."""
    return None if who.role == "admin" else who.name


def check_question(question: str) -> str:
    q = " ".join(question.split())
    if not q:
        raise InputError("the question is empty: ask something")
    if len(q) > MAX_QUESTION:
        raise InputError(f"the question has {len(q)} characters; at most {MAX_QUESTION}")
    return q


def start(svc: Service, *, title: str | None = None, collection: str | None = None,
          who: Principal) -> ConversationInfo:
    """A new, empty conversation (``title``: shown in lists; the first question when not given)."""
    if collection is not None:
        collection = check_name("collection", collection)
        if not who.sees(collection):
            raise NotFound(f"no collection '{collection[:200]}'")
    name = " ".join((title or "").split())[:MAX_TITLE]
    info = svc.catalog.create_conversation(name, collection, who.name, who.scope)
    svc.audit(who, "start conversation", "ok", collection=collection, detail=info.id)
    return info


def citations_of(answer: Answer, find: Callable[[str], Document | None]) -> list[Citation]:
    """The answer's evidence as citations frozen now: with each document's name and words version (``find``:
    doc_id -> the document, or None when it is not there)."""
    docs = {d: find(d) for d in {e.doc_id for e in answer.evidence}}
    out = []
    for i, e in enumerate(answer.evidence, 1):
        doc = docs[e.doc_id]
        out.append(Citation(n=i, doc_id=e.doc_id, document=doc.name if doc else e.doc_id[:12], page=e.page,
                            bbox=e.bbox, quote=e.quote, status=e.status, confidence=e.confidence,
                            words_version=doc.stages.get("words") if doc else None))
    return out


def _standalone(svc: Service, history: list[Turn], question: str) -> str:
    """``question`` rewritten with ``history`` by the VLM; as asked when it cannot be rewritten (a model that
    gives no valid rewrite must not cost the user the answer: the question is then searched as asked)."""
    if not history:
        return question
    from vlm.conversation import rewrite

    v = svc.settings.vlm
    pairs = [(t.standalone, t.answer.answer if t.answer.found else "(not found)") for t in history]
    try:
        return rewrite(svc.vlm(), pairs, question, max_attempts=min(2, v.max_attempts)) or question
    except ModelBehaviorError as e:
        log.warning("the follow-up could not be rewritten, searched as asked: %s", e)
        return question


def ask(svc: Service, cid: str, question: str, *, k: int = 3, who: Principal) -> Turn:
    """Ask ``question`` in conversation ``cid``: rewritten with its history, answered with verified evidence,
    stored. Raises NotFound (a conversation ``who`` may not see), InputError, ModelUnavailable."""
    q = check_question(question)
    info = svc.catalog.conversation_info(cid, owner_of(who))
    if info.collection is not None and not who.sees(info.collection):
        raise NotFound(f"no conversation '{cid[:64]}'")
    svc.vlm()  # fail fast, before the rewrite, when no VLM is configured
    history = svc.catalog.conversation_turns(cid)
    standalone = _standalone(svc, history, q)
    answer = svc.ask(standalone, k=k, collection=info.collection, who=who)
    turn = svc.catalog.add_turn(cid, q, standalone, answer, citations_of(answer, svc.catalog.get_document))
    if not info.title:
        svc.catalog.set_conversation_title(cid, q[:MAX_TITLE])
    return turn


def _state(doc: object | None, c: Citation) -> CitationState:
    if doc is None or getattr(doc, "status", "") == "removing":
        return "removed"
    words = getattr(doc, "stages", {}).get("words")
    return "reread" if c.words_version is not None and words != c.words_version else "ok"


def with_states(svc: Service, turns: list[Turn], who: Principal) -> list[Turn]:
    """The turns with each citation's ``state`` as the store is now (a document ``who`` no longer sees counts as
    removed: its page cannot be shown to them)."""
    ids = {c.doc_id for t in turns for c in t.citations}
    docs = {d: svc.catalog.get_document(d) for d in ids}
    docs = {d: doc if doc is not None and who.sees(doc.collection) else None for d, doc in docs.items()}
    out = []
    for t in turns:
        cites = []
        for c in t.citations:
            state = _state(docs[c.doc_id], c)
            cites.append(c.model_copy(update={"state": state, "note": CITATION_NOTES[state]}))
        out.append(t.model_copy(update={"citations": cites}))
    return out


def get(svc: Service, cid: str, *, who: Principal) -> Conversation:
    info = svc.catalog.conversation_info(cid, owner_of(who))
    return Conversation(info=info, turns=with_states(svc, svc.catalog.conversation_turns(cid), who))


def list_all(svc: Service, *, limit: int = 50, who: Principal) -> list[ConversationInfo]:
    return svc.catalog.list_conversations(owner_of(who), limit=max(1, min(limit, 500)))


def delete(svc: Service, cid: str, *, who: Principal) -> ConversationInfo:
    info = svc.catalog.conversation_info(cid, owner_of(who))
    svc.catalog.delete_conversation(cid)
    svc.audit(who, "delete conversation", "ok", collection=info.collection, detail=cid)
    return info
