"""Follow-up questions: a question asked after others is rewritten with the history into one that stands alone,
before retrieval (the retriever sees one question, not a conversation). Text only: no page is shown."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from vlm import prompts
from vlm.backend import Message, VlmBackend
from vlm.structured import generate_validated

HISTORY_TURNS = 4  # the last turns shown to the model: follow-ups refer to what was just said
MAX_QUESTION = 1000


class _RewriteOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    standalone: str = Field(min_length=1, max_length=MAX_QUESTION, description="the follow-up as a standalone "
                                                                                "question")


def history_text(history: Sequence[tuple[str, str]]) -> str:
    """The last turns as ``User: …`` / ``Assistant: …`` lines (answers cut to 500 characters)."""
    lines = []
    for question, answer in list(history)[-HISTORY_TURNS:]:
        lines += [f"User: {question}", f"Assistant: {answer[:500]}"]
    return "\n".join(lines)


def rewrite(backend: VlmBackend, history: Sequence[tuple[str, str]], question: str, *, max_attempts: int = 2,
            max_tokens: int = 200) -> str:
    """``question`` as a standalone question given ``history`` ((question, answer) pairs, oldest first); the
    question itself when there is no history. Raises ModelBehaviorError / ModelHTTPError from the backend."""
    if not history:
        return question
    text = prompts.REWRITE.format(history=history_text(history), question=question)
    out, _resp, _ = generate_validated(backend, [Message("system", [prompts.SYSTEM]), Message("user", [text])],
                                       _RewriteOut.model_json_schema(), _RewriteOut.model_validate,
                                       max_attempts=max_attempts, max_tokens=max_tokens)
    return " ".join(out.standalone.split())
