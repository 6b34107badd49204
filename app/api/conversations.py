"""Routes: conversations — questions asked one after another, each answer stored with its citations as answered
(``app.conversations``). A conversation belongs to the key that started it; admins see every one."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.deps import GUARDED, Reader, Svc
from app.api.models import ConversationRequest, MessageRequest
from schemas.conversations import Conversation, ConversationInfo, Turn

router = APIRouter(tags=["conversations"])


@router.post("/conversations", dependencies=GUARDED, status_code=201)
def start_conversation(svc: Svc, who: Reader, req: ConversationRequest | None = None) -> JSONResponse:
    """Start a conversation; its ``id`` is where its messages go."""
    req = req or ConversationRequest()
    info = svc.start_conversation(title=req.title, collection=req.collection, who=who)
    return JSONResponse(info.model_dump(mode="json"), status_code=201,
                        headers={"Location": f"/conversations/{info.id}"})


@router.get("/conversations", dependencies=GUARDED)
def list_conversations(svc: Svc, who: Reader, limit: int = Query(50, ge=1, le=500)) -> list[ConversationInfo]:
    """The conversations of this key (every one for an admin), most recently used first."""
    return svc.list_conversations(limit, who=who)


@router.get("/conversations/{conversation_id}", dependencies=GUARDED)
def get_conversation(svc: Svc, who: Reader, conversation_id: str) -> Conversation:
    """Every turn with every citation exactly as answered; ``state`` says when a cited document was removed or
    re-read since."""
    return svc.get_conversation(conversation_id, who=who)


@router.post("/conversations/{conversation_id}/messages", dependencies=GUARDED)
def post_message(svc: Svc, who: Reader, conversation_id: str, req: MessageRequest) -> Turn:
    """Ask a (follow-up) question: it is rewritten with the history into a standalone question (``standalone``),
    answered from the retrieved pages, and kept with its citations."""
    return svc.converse(conversation_id, req.question, k=req.k, who=who)


@router.delete("/conversations/{conversation_id}", dependencies=GUARDED)
def delete_conversation(svc: Svc, who: Reader, conversation_id: str) -> ConversationInfo:
    return svc.delete_conversation(conversation_id, who=who)
