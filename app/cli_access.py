"""``pagelens keys`` and ``pagelens audit``: API keys for the people a PageLens is shared with, and the log of
who wrote or was refused what. The CLI acts as the admin of its own data dir (it owns the files)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys (each with a role and the "
                                                  "collections it sees).")


def _shell() -> Any:
    from app import cli

    return cli


def _key_row(k: Any) -> dict[str, Any]:
    return {"name": k.name, "role": k.role, "collections": list(k.collections) if k.collections else None,
            "created_at": k.created_at.isoformat(), "expires_at": k.expires_at.isoformat() if k.expires_at else None,
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None, "hint": k.hint, "active": k.active}


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="who or what the key is for (unique, kept forever)")],
    role: Annotated[str, typer.Option("--role", help="reader (search, ask, locate, list, pages), writer (+ upload, "
                                                     "delete, extract, jobs, corrections) or admin (+ keys, audit)")],
    collections: Annotated[str | None, typer.Option("--collections", help="comma-separated collections it sees "
                                                                           "\\[default: every collection]")] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="30d, 12h, 90m or an ISO date \\[default: never]")]
    = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a key and print it once: only its SHA-256 is kept, so copy it now."""
    cli = _shell()
    cols = [c.strip() for c in collections.split(",") if c.strip()] if collections is not None else None
    with cli._session() as svc:
        made = svc.create_key(name, role, cols, expires)
    if as_json:
        print(json.dumps({"key": made.key, **_key_row(made.info)}, indent=2))
        return
    cli.out.print(f"[bold]{escape(made.key)}[/]")
    cli.err.print(f"key '{escape(made.info.name)}' ({made.info.role}; "
                  f"{escape(', '.join(made.info.collections)) if made.info.collections else 'every collection'}"
                  f"{'; expires ' + made.info.expires_at.isoformat() if made.info.expires_at else ''}). "
                  "It is shown this once: send it in the X-API-Key header.", soft_wrap=True)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the keys (never the keys themselves): role, collections, dates, last 4 characters."""
    cli = _shell()
    with cli._session(read_only=True) as svc:
        found = svc.list_keys()
    if as_json:
        print(json.dumps([_key_row(k) for k in found], indent=2))
        return
    table = Table(title=f"{len(found)} key{'s' if len(found) != 1 else ''}", box=box.SIMPLE_HEAD, show_edge=False)
    for col in ("name", "role", "collections", "state", "created", "…key"):
        table.add_column(col, overflow="fold")
    for k in found:
        state = ("revoked" if k.revoked_at else "expired" if not k.active
                 else f"expires {k.expires_at:%Y-%m-%d}" if k.expires_at else "active")
        table.add_row(escape(k.name), k.role, escape(", ".join(k.collections)) if k.collections else "(all)", state,
                      f"{k.created_at:%Y-%m-%d %H:%M}", f"…{escape(k.hint)}")
    cli.out.print(table)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name")],
                as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Revoke a key: it stops working at once (it stays listed, revoked, for the audit log)."""
    cli = _shell()
    with cli._session(read_only=True) as svc:
        info = svc.revoke_key(name)
    if as_json:
        print(json.dumps(_key_row(info), indent=2))
        return
    cli.out.print(f"revoked key '{escape(info.name)}'")


def audit(
    since: Annotated[str | None, typer.Option("--since", help="ISO date/time, or 1d, 12h, 90m ago")] = None,
    key: Annotated[str | None, typer.Option("--key", help="only this key's events")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 200,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The audit log, newest first: every write (upload, delete, extraction, correction, keys) and every denied
    request, with the key, role, action, collection, document and outcome."""
    from app.access import parse_moment
    from schemas.errors import PageLensError

    cli = _shell()
    try:
        start = parse_moment(since, ahead=False, option="--since") if since is not None else None
    except PageLensError as e:
        raise cli._fail(e) from e
    with cli._session(read_only=True) as svc:
        events = svc.audit_events(since=start, key_name=key, limit=limit)
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
        return
    table = Table(title=f"{len(events)} event{'s' if len(events) != 1 else ''}", box=box.SIMPLE_HEAD,
                  show_edge=False)
    for col in ("time", "key", "role", "action", "collection", "doc", "outcome", "detail"):
        table.add_column(col, overflow="fold")
    style = {"ok": "green", "denied": "red", "failed": "yellow"}
    for ev in events:
        table.add_row(f"{ev.at:%Y-%m-%d %H:%M:%S}", escape(ev.key_name), ev.role, escape(ev.action),
                      escape(ev.collection or ""), (ev.doc_id or "")[:12], f"[{style[ev.outcome]}]{ev.outcome}[/]",
                      escape(ev.detail[:120]))
    cli.out.print(table)
