"""PageLens for agents: an MCP server (the official Python SDK's ``MCPServer``) whose tools are the service's
operations — search, ask (in a conversation too), extract, locate, list_documents, get_page — with input and
output schemas from the project's own Pydantic models, and the evidence *boxes* in every answer.

Two transports, one set of tools:
- stdio (``pagelens mcp``), for desktop clients: acts as the key in ``PAGELENS_MCP_KEY`` (checked when it
  starts), else as the data dir's owner, like the CLI; through the running server when one owns the data dir.
- Streamable HTTP, mounted in the API at ``/mcp`` behind the same key middleware: each request acts as the key
  it sends (``X-API-Key``).
A reader key is offered the read tools only (``extract`` needs a writer). A PageLens error comes back as an MCP
tool error (``isError``) whose text is ``error (<code>): <what to do>`` and whose structured content is
``{"error": {"code", "message"}}``."""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from schemas.access import LOCAL_ADMIN, Principal, Role
from schemas.answers import Answer, Extraction, LocateResult
from schemas.conversations import Citation
from schemas.coords import BBox
from schemas.documents import Document
from schemas.errors import Forbidden, InputError, PageLensError
from schemas.results import Hit

log = logging.getLogger(__name__)
KEY_ENV = "PAGELENS_MCP_KEY"
MAX_PAGE_WIDTH = 2000
INSTRUCTIONS = (
    "PageLens searches and answers over the user's PDFs and page images, and every answer and extracted value "
    "comes with evidence: the page and the box on it, checked against the page's own words (status verified = "
    "found on the page; approximate = a fuzzy match; unverified = not on the page). Use search to find pages, ask "
    "for a grounded answer (pass conversation_id to ask follow-ups: 'new' starts a conversation), extract for "
    "structured fields under a JSON Schema, locate to check where a value is printed, and get_page to look at a "
    "page with boxes drawn.")
F = TypeVar("F", bound=Callable[..., Any])
ROLE_OF_TOOL: dict[str, Role] = {"search": "reader", "ask": "reader", "locate": "reader",
                                 "list_documents": "reader", "get_page": "reader", "extract": "writer"}


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchOut(_Out):
    pages: list[Hit] = Field(description="best first: document, page, score, snippet, matched words with boxes")


class AskOut(_Out):
    answer: str
    found: bool
    consistent: bool = Field(description="the answer is backed by verified evidence and its numbers are quoted")
    evidence: list[Citation] = Field(description="document, page, box (page fractions, top-left origin), quote, "
                                                 "verification status")
    model: str
    conversation_id: str | None = Field(None, description="pass it again to ask a follow-up")
    standalone_question: str | None = Field(None, description="a follow-up as rewritten with the history")


class DocumentsOut(_Out):
    documents: list[Document]


def tool_error(e: PageLensError) -> Any:
    from mcp_types import CallToolResult, TextContent

    return CallToolResult(content=[TextContent(type="text", text=f"error ({e.code}): {e}")],
                          structured_content={"error": {"code": e.code, "message": str(e)}}, is_error=True)


class Tools:
    """The tools over one way to the data dir. ``acting(ctx)`` gives the operations and the principal a call
    acts as: a Service seen as that principal (``app.access.Acting``) or a RemoteService acting as its key."""

    def __init__(self, acting: Callable[[Any], tuple[Any, Principal]]) -> None:
        self.acting = acting

    def _as(self, ctx: Any, tool: str) -> Any:
        ops, who = self.acting(ctx)
        need = ROLE_OF_TOOL[tool]
        if not who.can(need):
            raise Forbidden(f"key '{who.name}' is a {who.role}; {tool} needs the {need} role")
        return ops

    def register(self, server: Any) -> None:
        read = ToolAnnotations(read_only_hint=True, open_world_hint=False)

        def guarded(fn: F) -> F:
            @functools.wraps(fn)
            def call(*args: Any, **kw: Any) -> Any:
                try:
                    return fn(*args, **kw)
                except PageLensError as e:
                    return tool_error(e)
                except ValueError as e:  # a box or argument our own models refuse
                    return tool_error(InputError(str(e)))
            return call  # type: ignore[return-value]

        @guarded
        def search(question: str, ctx: Context, k: int = 5, collection: str | None = None) -> SearchOut:
            """The pages most about the question, best first, each with its document's name, page number, score
            (relevance 0..1), a snippet of its text and the words that matched, each with its box."""
            ops = self._as(ctx, "search")
            return SearchOut(pages=ops.search(_question(question), k=_bounded(k, 1, 50, "k"),
                                              collection=collection))

        @guarded
        def ask(question: str, ctx: Context, collection: str | None = None,
                conversation_id: str | None = None, k: int = 3) -> AskOut:
            """A short answer from the retrieved pages, with evidence (page, box, quote, status) checked against
            each page's words. conversation_id: ask in that conversation ('new' starts one; its id comes back),
            so a follow-up is rewritten with the history before retrieval."""
            ops = self._as(ctx, "ask")
            q, k = _question(question), _bounded(k, 1, 20, "k")
            if conversation_id is None:
                return _ask_out(ops.ask(q, k=k, collection=collection), ops)
            if conversation_id == "new":
                conversation_id = ops.start_conversation(collection=collection).id
            turn = ops.converse(conversation_id, q, k=k)
            a = turn.answer
            return AskOut(answer=a.answer, found=a.found, consistent=a.consistent, evidence=turn.citations,
                          model=a.model, conversation_id=conversation_id, standalone_question=turn.standalone)

        @guarded
        def extract(schema: dict[str, Any], documents: list[str], ctx: Context, max_pages: int = 8) -> Extraction:
            """Fields under a JSON Schema from the given documents (ids, id prefixes or names): each field's
            value, boxes, verification status and confidence. Longer documents than max_pages are read field
            by field over the pages search ranks highest for each."""
            ops = self._as(ctx, "extract")
            if not documents:
                raise InputError("give at least one document (list them with list_documents)")
            return ops.extract(schema, documents, max_pages=_bounded(max_pages, 1, 64, "max_pages"))

        @guarded
        def locate(document: str, page: int, value: str, ctx: Context) -> LocateResult:
            """Where a value is printed on a page: its boxes, status (verified/approximate/unverified),
            confidence, and the other places when it is printed more than once."""
            ops = self._as(ctx, "locate")
            return ops.locate(document, _bounded(page, 1, 1_000_000, "page"), value[:10_000])

        @guarded
        def list_documents(ctx: Context, collection: str | None = None) -> DocumentsOut:
            """The documents this key sees: id, name, collection, pages, status."""
            return DocumentsOut(documents=self._as(ctx, "list_documents").list_documents(collection))

        @guarded
        def get_page(document: str, page: int, ctx: Context, boxes: list[list[float]] | None = None,
                     width: int = 1000) -> Any:
            """The page as a PNG image, with boxes drawn (each [x0, y0, x1, y1] in page fractions, top-left
            origin, as search, ask and extract give them), so you can look at the evidence."""
            from mcp_types import CallToolResult, ImageContent, TextContent

            ops = self._as(ctx, "get_page")
            drawn = [(BBox.of(b), "verified") for b in (boxes or [])[:50]]
            w = _bounded(width, 100, MAX_PAGE_WIDTH, "width")
            png = ops.page_png(document, _bounded(page, 1, 1_000_000, "page"), width=w, boxes=drawn)
            doc = ops.get_document(document)
            return CallToolResult(content=[
                ImageContent(type="image", data=base64.b64encode(png).decode(), mime_type="image/png"),
                TextContent(type="text", text=f"{doc.name}, page {page} of {doc.page_count}"
                                              + (f", {len(drawn)} box(es) drawn" if drawn else ""))])

        server.add_tool(search, annotations=read)
        server.add_tool(ask, annotations=ToolAnnotations(read_only_hint=False, open_world_hint=False))
        server.add_tool(extract, annotations=ToolAnnotations(read_only_hint=False, open_world_hint=False))
        server.add_tool(locate, annotations=read)
        server.add_tool(list_documents, annotations=read)
        server.add_tool(get_page, annotations=read, structured_output=False)


def _question(q: str) -> str:
    q = " ".join(q.split())
    if not q:
        raise InputError("the question is empty: ask something")
    if len(q) > 2000:
        raise InputError(f"the question has {len(q)} characters; at most 2000")
    return q


def _bounded(n: int, lo: int, hi: int, name: str) -> int:
    if not lo <= n <= hi:
        raise InputError(f"{name} {n}: give {lo} to {hi}")
    return n


def _ask_out(a: Answer, ops: Any) -> AskOut:
    from app.conversations import citations_of

    def find(doc_id: str) -> Document | None:
        try:
            return ops.get_document(doc_id)
        except PageLensError:
            return None

    return AskOut(answer=a.answer, found=a.found, consistent=a.consistent, evidence=citations_of(a, find),
                  model=a.model)


def _role_filter(acting: Callable[[Any], tuple[Any, Principal]]) -> Any:
    """MCP middleware: ``tools/list`` offers only the tools the caller's role may call."""

    async def middleware(ctx: Any, call_next: Any) -> Any:
        result = await call_next(ctx)
        if ctx.method == "tools/list" and isinstance(result, dict) and "tools" in result:
            try:
                _, who = acting(ctx)
            except PageLensError:
                return result
            result = {**result, "tools": [t for t in result["tools"]
                                          if who.can(ROLE_OF_TOOL.get(t.get("name", ""), "admin"))]}
        return result

    return middleware


def build_server(acting: Callable[[Any], tuple[Any, Principal]]) -> Any:
    """An MCPServer with PageLens's tools; ``acting(ctx)`` -> (operations, principal) for each call."""
    from importlib.metadata import PackageNotFoundError, version

    from mcp.server.mcpserver import MCPServer

    try:
        ours = version("pagelens")
    except PackageNotFoundError:
        ours = "0"
    server = MCPServer(name="pagelens", title="PageLens", version=ours, instructions=INSTRUCTIONS,
                       middleware=[_role_filter(acting)], log_level="WARNING")
    Tools(acting).register(server)
    return server


def http_acting(svc: Any) -> Callable[[Any], tuple[Any, Principal]]:
    """For the API's /mcp: each request acts as the principal RequestGuard found for its key."""
    from app.access import Acting

    def acting(ctx: Any) -> tuple[Any, Principal]:
        request = getattr(ctx, "request_context", ctx)
        request = getattr(request, "request", None)
        who = request.scope.get("state", {}).get("principal") if request is not None else None
        if who is None:  # RequestGuard sets it on every guarded path; never act without it
            raise Forbidden("no key was checked for this request")
        return Acting(svc, who), who

    return acting


def stdio_acting(svc: Any, key: str | None) -> Callable[[Any], tuple[Any, Principal]]:
    """For ``pagelens mcp`` over ``svc`` (a Service, or the RemoteService of the server that owns the data dir):
    acting as ``key``, or as the local owner without one. Raises Unauthorized for a key that is not valid."""
    from app.access import Acting
    from schemas.errors import Unauthorized

    who = svc.sign_in(key) if key else LOCAL_ADMIN
    if who is None:
        raise Unauthorized(f"{KEY_ENV} is not a valid, active key of this data dir (pagelens keys list shows "
                           "them; pagelens keys create makes one)")
    ops = (svc.as_key(key) if key else svc) if getattr(svc, "remote", False) else Acting(svc, who)
    return lambda _ctx: (ops, who)
