"""``pagelens conversations``: list, show and delete conversations (asked with ``pagelens ask --conversation``);
shown again, each citation is as it was answered, and says when its document was removed or re-read since."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

conversations_app = typer.Typer(no_args_is_help=True, help="Conversations: questions asked one after another "
                                                           "(pagelens ask --conversation new), kept with their "
                                                           "citations.")


def _shell() -> Any:
    from app import cli

    return cli


@conversations_app.command("list")
def conversations_list(
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The conversations, most recently used first."""
    cli = _shell()
    with cli._session(read_only=True) as svc:
        found = svc.list_conversations(limit)
    if as_json:
        print(json.dumps([c.model_dump(mode="json") for c in found], indent=2))
        return
    if not found:
        cli.err.print("no conversations yet: start one with pagelens ask \"…\" --conversation new")
        return
    table = Table(box=box.SIMPLE, show_edge=False)
    for col in ("id", "turns", "updated", "collection", "title"):
        table.add_column(col, overflow="ellipsis", no_wrap=col != "title")
    for c in found:
        table.add_row(c.id, str(c.turns), f"{c.updated_at:%Y-%m-%d %H:%M}", escape(c.collection or "*"),
                      escape(c.title))
    cli.out.print(table)


@conversations_app.command("show")
def conversations_show(
    conversation_id: Annotated[str, typer.Argument(help="the conversation's id")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every turn with its citations as answered (document, page, box, quote, status)."""
    cli = _shell()
    with cli._session(read_only=True) as svc:
        conv = svc.get_conversation(conversation_id)
    if as_json:
        print(conv.model_dump_json(indent=2))
        return
    cli.out.print(f"[bold]{escape(conv.info.title or conv.info.id)}[/] [dim]({conv.info.id}, "
                  f"{len(conv.turns)} turn{'s' if len(conv.turns) != 1 else ''})[/]")
    for t in conv.turns:
        cli.out.print(f"\n[cyan]{t.n}. {escape(t.question)}[/]")
        if t.standalone != t.question:
            cli.out.print(f"   [dim]searched as: {escape(t.standalone)}[/]")
        cli.out.print(f"   {escape(t.answer.answer)}")
        for c in t.citations:
            color = {"verified": "green", "approximate": "yellow", "unverified": "red"}[c.status]
            box_text = ",".join(f"{x:.3f}" for x in c.bbox.as_list()) if c.bbox else "no box"
            state = "" if c.state == "ok" else f" [red]{c.state}[/]: {escape(c.note)}"
            cli.out.print(f"   [{color}]{escape(f'[{c.n}]')} {c.status}[/] {escape(c.document)} p.{c.page} "
                          f"{escape(f'[{box_text}]')} "
                          f"\"{escape(c.quote)}\"{state}", soft_wrap=True)


@conversations_app.command("delete")
def conversations_delete(conversation_id: Annotated[str, typer.Argument(help="the conversation's id")]) -> None:
    """Delete a conversation and its turns (the documents it cites stay)."""
    cli = _shell()
    with cli._session() as svc:
        gone = svc.delete_conversation(conversation_id)
    cli.err.print(f"deleted conversation {gone.id} ({gone.turns} turn{'s' if gone.turns != 1 else ''})")
