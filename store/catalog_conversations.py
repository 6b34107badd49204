"""The catalog's conversations: each turn's question, rewritten question, answer and citations, stored as answered."""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine

from schemas.answers import Answer
from schemas.conversations import Citation, ConversationInfo, Turn
from schemas.errors import NotFound
from store.sql_errors import translated
from store.tables import conversation_turns, conversations, now


@translated
class Conversations:
    """Part of ``store.catalog.Catalog`` (which owns ``engine``). ``owner``: the key name whose conversations are
    visible (None: every one, as an admin)."""

    engine: Engine

    def create_conversation(self, title: str, collection: str | None, key_name: str,
                            scope: Collection[str] | None) -> ConversationInfo:
        cid = secrets.token_hex(8)
        t = now()
        with self.engine.begin() as c:
            c.execute(insert(conversations).values(
                id=cid, title=title, collection=collection, key_name=key_name,
                scope=None if scope is None else json.dumps(sorted(scope)), created_at=t, updated_at=t))
        return ConversationInfo(id=cid, title=title, collection=collection, key_name=key_name, turns=0,
                                created_at=t, updated_at=t)

    def _info_query(self, owner: str | None) -> Any:
        n = (select(func.count()).where(conversation_turns.c.conversation_id == conversations.c.id)
             .scalar_subquery())
        q = select(conversations, n.label("turns"))
        return q if owner is None else q.where(conversations.c.key_name == owner)

    @staticmethod
    def _info(row: Any) -> ConversationInfo:
        return ConversationInfo(id=row.id, title=row.title, collection=row.collection, key_name=row.key_name,
                                turns=row.turns, created_at=row.created_at, updated_at=row.updated_at)

    def conversation_info(self, cid: str, owner: str | None) -> ConversationInfo:
        """Raises NotFound (also for a conversation ``owner`` may not see)."""
        with self.engine.connect() as c:
            row = c.execute(self._info_query(owner).where(conversations.c.id == cid)).first()
        if row is None:
            raise NotFound(f"no conversation '{cid[:64]}'; list yours with GET /conversations "
                           "(or: pagelens conversations list)")
        return self._info(row)

    def conversation_scope(self, cid: str) -> list[str] | None:
        """The collections of the key that started it, as they were then (None: every collection)."""
        with self.engine.connect() as c:
            raw = c.execute(select(conversations.c.scope).where(conversations.c.id == cid)).scalar()
        return None if raw is None else list(json.loads(raw))

    def list_conversations(self, owner: str | None, limit: int = 50) -> list[ConversationInfo]:
        """The newest ``limit`` conversations ``owner`` sees, most recently used first."""
        q = self._info_query(owner).order_by(conversations.c.updated_at.desc(), conversations.c.id).limit(limit)
        with self.engine.connect() as c:
            return [self._info(r) for r in c.execute(q)]

    def conversation_turns(self, cid: str) -> list[Turn]:
        q = select(conversation_turns).where(conversation_turns.c.conversation_id == cid).order_by(
            conversation_turns.c.n)
        with self.engine.connect() as c:
            rows = list(c.execute(q))
        return [Turn(n=r.n, question=r.question, standalone=r.standalone,
                     answer=Answer.model_validate_json(r.answer),
                     citations=[Citation.model_validate(x) for x in json.loads(r.citations)],
                     created_at=r.created_at) for r in rows]

    def add_turn(self, cid: str, question: str, standalone: str, answer: Answer,
                 citations: list[Citation]) -> Turn:
        """Append a turn (numbered after the last one, in one transaction)."""
        t = now()
        with self.engine.begin() as c:
            last = c.execute(select(func.max(conversation_turns.c.n))
                             .where(conversation_turns.c.conversation_id == cid)).scalar()
            n = (last or 0) + 1
            c.execute(insert(conversation_turns).values(
                conversation_id=cid, n=n, question=question, standalone=standalone,
                answer=answer.model_dump_json(),
                citations=json.dumps([x.model_dump(mode="json") for x in citations]), created_at=t))
            c.execute(update(conversations).where(conversations.c.id == cid).values(updated_at=t))
        return Turn(n=n, question=question, standalone=standalone, answer=answer, citations=citations, created_at=t)

    def set_conversation_title(self, cid: str, title: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(conversations).where(conversations.c.id == cid).values(title=title))

    def delete_conversation(self, cid: str) -> None:
        with self.engine.begin() as c:
            c.execute(delete(conversation_turns).where(conversation_turns.c.conversation_id == cid))
            c.execute(delete(conversations).where(conversations.c.id == cid))
