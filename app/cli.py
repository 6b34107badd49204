"""The ``pagelens`` command (typer + rich). A thin shell over app.service: parsing, progress, printing."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from schemas.errors import InputError, PageLensError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="PageLens: ingest PDFs and page images, search them, ask grounded questions.")
docs_app = typer.Typer(no_args_is_help=True, help="List, show and delete ingested documents.")
app.add_typer(docs_app, name="docs")
out = Console()
err = Console(stderr=True)


def _service() -> Any:
    from app.service import Service

    return Service()


def _fail(e: PageLensError) -> typer.Exit:
    err.print(f"[bold red]error[/] ({e.code}): {e.message}")
    return typer.Exit(2 if isinstance(e, InputError) else 1)


@contextmanager
def _session() -> Iterator[Any]:
    """The service for one command: PageLens errors become a clear message and exit code (2 for bad input)."""
    svc = _service()
    try:
        yield svc
    except PageLensError as e:
        raise _fail(e) from e
    finally:
        svc.close()


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="PDF/image files or folders (recursive)")],
    collection: Annotated[str | None, typer.Option("--collection", "-c", help="collection name")] = None,
    password: Annotated[str | None, typer.Option("--password", help="password for encrypted PDFs")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="write the IngestReport as JSON here")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="page-reader processes")] = 1,
) -> None:
    """Ingest documents: words (text layer or OCR), BM25 and SigLIP vectors, the catalog."""
    from ingest.pipeline import Progress as IngestProgress

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("files · [cyan]{task.fields[pages]}[/] pages · {task.fields[rate]} pages/s"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)
    task = bar.add_task("ingest", total=None, pages=0, rate="–")

    def on_progress(p: IngestProgress) -> None:
        if p.notice:
            bar.console.print(f"[yellow]note[/]: {p.notice}")
        elapsed = bar.tasks[task].elapsed or 0.0
        rate = f"{p.pages_done / elapsed:.1f}" if elapsed > 0.5 else "–"
        bar.update(task, total=p.files_total, completed=p.files_done, pages=p.pages_done, rate=rate,
                   description=(p.current[:40] or "ingest"))

    with _session() as svc, bar:
        result = svc.ingest(paths, collection=collection, password=password, on_progress=on_progress,
                            workers=workers)
    _print_report(result)
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(result.model_dump_json(indent=2))
    raise typer.Exit(1 if result.failed else 0)


def _print_report(result: Any) -> None:
    table = Table(title=f"Ingested in {result.seconds:.1f}s", show_lines=False)
    for col in ("file", "status", "pages", "doc", "detail"):
        table.add_column(col, overflow="fold")
    style = {"ingested": "green", "unchanged": "dim", "failed": "red"}
    rows = result.files if len(result.files) <= 40 else [f for f in result.files if f.status == "failed"][:40]
    for f in rows:
        detail = f"{f.error.code}: {f.error.message}" if f.error else (
            f"pending: {', '.join(f.pending)}" if f.pending else "")
        table.add_row(Path(f.path).name, f"[{style[f.status]}]{f.status}[/]", str(f.pages),
                      (f.doc_id or "")[:12], detail)
    out.print(table)
    out.print(f"[green]{result.count('ingested')} ingested[/], {result.count('unchanged')} unchanged, "
              f"[red]{result.count('failed')} failed[/]; {result.pages} pages")


@app.command()
def search(
    question: Annotated[str | None, typer.Argument(help="the question")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="pages to return")] = 5,
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    doc: Annotated[list[str] | None, typer.Option("--doc", help="restrict to these documents (id or name)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    queries: Annotated[Path | None, typer.Option("--queries", help='JSONL of {"id", "question"}')] = None,
) -> None:
    """Search pages: hybrid SigLIP + BM25 with RRF; shows the matching words of each page."""
    if (question is None) == (queries is None):
        err.print("give either a QUESTION or --queries FILE.jsonl")
        raise typer.Exit(2)
    with _session() as svc:
        doc_ids = [svc.get_document(d).doc_id for d in doc] if doc else None
        if queries is not None:
            _batch_search(svc, queries, k, collection, doc_ids)
            return
        assert question is not None
        hits = svc.search(question, k=k, collection=collection, doc_ids=doc_ids)
    if as_json:
        print(json.dumps([h.model_dump(mode="json") for h in hits], indent=2))
        return
    if not hits:
        out.print("no matching pages (is anything ingested? see: pagelens docs list)")
    for rank, h in enumerate(hits, 1):
        words = " ".join(dict.fromkeys(w.text for w in h.words))[:100]
        out.print(f"[bold]{rank}.[/] {Path(h.path).name} p.{h.page}  [dim]score {h.score:.4f} · "
                  f"{h.doc_id[:12]}[/]\n   [cyan]{words}[/]")


def _jsonl(path: Path, keys: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """The objects of a JSONL file, each checked to have ``keys``. Raises InputError naming the bad line."""
    if not path.exists():
        raise InputError(f"{path} does not exist")
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
            missing = [k for k in keys if k not in q]
        except (json.JSONDecodeError, TypeError) as e:
            raise InputError(f"{path}:{n}: not a JSON object ({e})") from e
        if not isinstance(q, dict) or missing:
            raise InputError(f"{path}:{n}: each line must be a JSON object with {', '.join(map(repr, keys))}")
        yield q


def _batch_search(svc: Any, queries: Path, k: int, collection: str | None, doc_ids: list[str] | None) -> None:
    for q in _jsonl(queries, ("id", "question")):
        qid, text = q["id"], q["question"]
        hits = svc.search(text, k=k, collection=collection, doc_ids=doc_ids)
        print(json.dumps({"id": qid, "hits": [{"doc_id": h.doc_id, "path": h.path, "page": h.page,
                                               "score": h.score} for h in hits]}), flush=True)


@docs_app.command("list")
def docs_list(collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
              as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List documents."""
    with _session() as svc:
        docs = svc.list_documents(collection)
    if as_json:
        print(json.dumps([d.model_dump(mode="json") for d in docs], indent=2))
        return
    table = Table(title=f"{len(docs)} documents")
    for col in ("doc", "name", "collection", "pages", "status", "words", "pending"):
        table.add_column(col, overflow="fold")
    for d in docs:
        words = ", ".join(f"{k}:{v}" for k, v in sorted(d.words_sources.items()))
        table.add_row(d.doc_id[:12], Path(d.name).name, d.collection, str(d.page_count), d.status, words,
                      ", ".join(d.pending))
    out.print(table)


@docs_app.command("show")
def docs_show(doc: Annotated[str, typer.Argument(help="document id, id prefix or file name")]) -> None:
    """Show one document as JSON."""
    with _session() as svc:
        print(svc.get_document(doc).model_dump_json(indent=2))


@docs_app.command("delete")
def docs_delete(doc: Annotated[str, typer.Argument(help="document id, id prefix or file name")]) -> None:
    """Delete a document: catalog rows, vectors and the stored file."""
    with _session() as svc:
        d = svc.delete_document(doc)
    out.print(f"deleted {d.doc_id[:12]} ({Path(d.name).name}, {d.page_count} pages)")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    k: Annotated[int, typer.Option("-k", min=1, max=20, help="pages to read")] = 3,
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    doc: Annotated[list[str] | None, typer.Option("--doc", help="restrict to these documents")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Answer a question from the retrieved pages, with evidence boxes checked against the page's words."""
    with _session() as svc:
        doc_ids = [svc.get_document(d).doc_id for d in doc] if doc else None
        answer = svc.ask(question, k=k, collection=collection, doc_ids=doc_ids)
    if as_json:
        print(answer.model_dump_json(indent=2))
        return
    out.print(f"[bold]{answer.answer}[/]" if answer.found else f"[yellow]{answer.answer}[/]")
    for ev in answer.evidence:
        color = {"verified": "green", "approximate": "yellow", "unverified": "red"}[ev.status]
        out.print(f"  [{color}]{ev.status}[/] p.{ev.page} {ev.doc_id[:12]}: \"{ev.quote}\" "
                  f"[dim](confidence {ev.confidence:.2f})[/]")


@app.command()
def extract(
    schema: Annotated[str, typer.Option("--schema", help="a JSON Schema file (.json) or module:PydanticModel")],
    files: Annotated[list[Path] | None, typer.Argument(help="files to ingest and extract from")] = None,
    doc: Annotated[list[str] | None, typer.Option("--doc", help="ingested documents (id or name)")] = None,
    max_pages: Annotated[int, typer.Option("--max-pages", min=1, max=64)] = 8,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Extract the schema's fields, each with its value, boxes, confidence and verification status."""
    if not files and not doc:
        err.print("give FILE... or --doc ID...")
        raise typer.Exit(2)
    with _session() as svc:
        refs = list(doc or [])
        if files:
            svc.vlm()  # fail fast when no VLM is configured, before ingesting anything
            report = svc.ingest(list(files))
            for f in report.files:
                if f.status == "failed" and f.error:
                    raise PageLensError(f"{f.path}: {f.error.message}", code=f.error.code)
                refs.append(f.doc_id or "")
        result = svc.extract(schema, refs, max_pages=max_pages)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    table = Table(title=f"extraction {result.id[:12]} · {result.model}")
    for col in ("field", "value", "status", "confidence", "page"):
        table.add_column(col, overflow="fold")
    for f in result.fields:
        color = {"verified": "green", "approximate": "yellow", "unverified": "red"}[f.status]
        pages = ",".join(str(b.page) for b in f.boxes)
        table.add_row(f.path, str(f.value), f"[{color}]{f.status}[/]", f"{f.confidence:.2f}", pages)
    out.print(table)


@app.command()
def locate(
    queries: Annotated[Path, typer.Option("--queries", help='JSONL: {"id","doc_id","page","value","near"}')],
) -> None:
    """The verifier alone: where on this page is this value? One JSON result per input line."""
    with _session() as svc:
        for q in _jsonl(queries, ("id", "doc_id", "page", "value")):
            if not isinstance(q["page"], int):
                raise InputError(f"{queries}: page must be a 1-based integer, got {q['page']!r} (id {q['id']})")
            res = svc.locate(q["doc_id"], q["page"], q["value"], q.get("near"))
            print(json.dumps({"id": q["id"], **res.model_dump(exclude={"id"})}), flush=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    from app.api import create_app

    uvicorn.run(create_app(), host=host, port=port, log_level="info")


@app.command()
def ui(
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8501,
    host: Annotated[str, typer.Option(help="address to bind (127.0.0.1: this machine only)")] = "127.0.0.1",
) -> None:
    """Serve the web UI (Streamlit) — Library, Search, Ask, Extract."""
    import os

    script = Path(__file__).with_name("ui.py")
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", host, "--server.port", str(port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.showErrorDetails", "false",
           "--client.toolbarMode", "minimal"]
    out.print(f"PageLens UI on http://{host}:{port}")
    # exec, not a child process: stopping `pagelens ui` must stop the server (it holds the embedded store)
    os.execv(sys.executable, cmd)


@app.command()
def demo(question: Annotated[str, typer.Argument()] = "scanned contracts") -> None:
    """Make a sample PDF (with a scanned page), ingest it and search it: the embedded defaults, end to end."""
    from app.demo import make_sample_pdf
    from schemas.settings import Settings

    sample = make_sample_pdf(Settings().data_dir / "samples" / "pagelens-sample.pdf")
    out.print(f"sample document: {sample}")
    try:
        ingest([sample], collection=None, password=None, report=None, workers=1)
    except typer.Exit as e:
        if e.exit_code:
            raise
    out.print(f'\n[bold]pagelens search "{question}"[/]')
    search(question, k=3, collection=None, doc=None, as_json=False, queries=None)


def main() -> None:
    try:
        app()
    except PageLensError as e:  # errors raised outside a command's own handling (e.g. the store is locked)
        err.print(f"[bold red]error[/] ({e.code}): {e.message}")
        sys.exit(1)


if __name__ == "__main__":
    main()
