"""The ``pagelens`` command (typer + rich). A thin shell over app.service: parsing, progress, printing."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from app.cli_access import audit, keys_app
from app.cli_calibrate import calibrate_app
from app.cli_conversations import conversations_app
from schemas.errors import InputError, PageLensError
from schemas.settings import SettingsError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="PageLens: ingest PDFs and page images, search them, ask grounded questions.")
docs_app = typer.Typer(no_args_is_help=True, help="List, show and delete ingested documents.")
app.add_typer(docs_app, name="docs")
eval_app = typer.Typer(no_args_is_help=True, help="Score PageLens against gold JSONL files; compare with an "
                                                  "earlier report.")
app.add_typer(eval_app, name="eval")
app.add_typer(keys_app, name="keys")
app.add_typer(conversations_app, name="conversations")
app.add_typer(calibrate_app, name="calibrate")
app.command("audit")(audit)
out = Console()
err = Console(stderr=True)


def _service(*, read_only: bool = False) -> Any:
    """The service, built from the environment: through the PageLens server that owns the data dir when one runs
    (said once, on stderr), else in this process. ``read_only``: never create a data dir (a mistyped
    PAGELENS_DATA_DIR must not look like an empty store)."""
    from app.remote import open_service

    svc = open_service(create_data_dir=not read_only)
    if getattr(svc, "remote", False):
        err.print(f"[dim]via the PageLens server at {escape(svc.url)}, which owns "
                  f"{escape(str(svc.settings.data_dir))}[/]", soft_wrap=True)
    return svc


def _print_error(e: PageLensError) -> None:
    """One unwrapped line on stderr (the message is text, not rich markup)."""
    err.print(f"[bold red]error[/] ({e.code}): {escape(e.message)}", soft_wrap=True)


def _fail(e: PageLensError) -> typer.Exit:
    """Print ``e``; exit 2 for bad input or a bad setting, 1 otherwise."""
    _print_error(e)
    return typer.Exit(2 if isinstance(e, InputError | SettingsError) else 1)


@contextmanager
def _session(*, read_only: bool = False) -> Iterator[Any]:
    """The service for one command: PageLens errors become a clear message and exit code (2 for bad input)."""
    try:
        svc = _service(read_only=read_only)
    except PageLensError as e:
        raise _fail(e) from e
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
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, max=64, help="page-reader processes; a long file is shared among them by page ranges "
                                         "\\[default: PAGELENS_INGEST__WORKERS, else one per core]")] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS", help="read on a Ray cluster: 'local' (start one here), 'auto' (the one this "
                                         "machine joined) or ray://host:10001; needs pagelens\\[ray]")] = None,
) -> None:
    """Ingest documents: words (text layer or OCR), BM25 and SigLIP vectors, the catalog."""
    bar, on_progress = _progress_bar()
    with _session() as svc, bar:
        result = svc.ingest(paths, collection=collection, password=password, on_progress=on_progress,
                            workers=workers, ray=ray)
    _print_report(result)
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(result.model_dump_json(indent=2))
    raise typer.Exit(1 if result.failed else 0)


PAGES_A_LINE = 500  # without a terminal: a line per finished file, and one per this many pages of a long one


def _progress_bar() -> tuple[Any, Callable[[Any], None]]:
    """A bar counting pages (the total grows as files are opened, so one long file has an ETA), and the
    ``on_progress`` callback that drives it. Each distinct notice is printed once per run. When stderr is not a
    terminal (piped, logged) there is no bar: a line per finished file and per PAGES_A_LINE pages instead."""
    shown: set[str] = set()
    if not err.is_terminal:
        return _line_progress(shown)
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                   TextColumn("{task.fields[files]} files · {task.fields[pages]} pages · {task.fields[rate]} pages/s"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)
    task = bar.add_task("ingest", total=None, files="0/0", pages="0", rate="–")

    def on_progress(p: Any) -> None:  # p: ingest.pipeline.Progress
        if p.notice and p.notice not in shown:
            shown.add(p.notice)
            bar.console.print(f"[yellow]note[/]: {escape(p.notice)}")
        elapsed = bar.tasks[task].elapsed or 0.0
        rate = f"{p.pages_done / elapsed:.1f}" if elapsed > 0.5 else "–"
        if getattr(p, "stage", None):  # a stage after the read counts its own pages
            bar.update(task, total=p.stage_total or None, completed=p.stage_done,
                       files=f"{p.files_done}/{p.files_total}", pages=f"{p.stage_done}/{p.stage_total}", rate="–",
                       description=escape(p.stage))
            return
        # the bar counts files (their number is known from the start), a file being read by its share of pages
        done = p.work_done if getattr(p, "work_done", None) is not None else float(p.files_done)
        pages = f"{p.pages_done}/{p.pages_total}" if p.pages_total else f"{p.pages_done}"
        bar.update(task, total=p.files_total or None, completed=done, files=f"{p.files_done}/{p.files_total}",
                   pages=pages, rate=rate, description=escape(p.current[:30]) or "ingest")

    return bar, on_progress


def _line_progress(shown: set[str]) -> tuple[Any, Callable[[Any], None]]:
    import time

    started = time.monotonic()
    last = {"files": 0, "pages": 0, "stage": 0}

    def on_progress(p: Any) -> None:
        if p.notice and p.notice not in shown:
            shown.add(p.notice)
            print(f"note: {p.notice}", file=sys.stderr, flush=True)
        if getattr(p, "stage", None):
            if p.stage_done - last["stage"] >= PAGES_A_LINE or p.stage_done == p.stage_total:
                last["stage"] = p.stage_done
                print(f"{p.stage}: {p.stage_done}/{p.stage_total} pages, {time.monotonic() - started:.0f}s",
                      file=sys.stderr, flush=True)
            return
        if p.files_done > last["files"] or p.pages_done - last["pages"] >= PAGES_A_LINE:
            last["files"], last["pages"] = p.files_done, p.pages_done
            print(f"ingest: {p.files_done}/{p.files_total} files, {p.pages_done} pages, "
                  f"{time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)

    return contextlib.nullcontext(), on_progress


def _n(count: int, noun: str) -> str:
    """``1 page``, ``2 pages``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _detail(f: Any) -> str:
    """The detail column of one FileOutcome: its error, or its pending stages and warnings."""
    if f.error:
        return f"{f.error.code}: {f.error.message}"
    parts = [f"pending: {', '.join(f.pending)}"] if f.pending else []
    return "; ".join(parts + list(f.warnings))


def _print_report(result: Any) -> None:
    table = Table(title=f"Ingested in {result.seconds:.1f}s", show_lines=False)
    for col in ("file", "status", "pages", "doc", "detail"):
        table.add_column(col, overflow="fold")
    style = {"ingested": "green", "unchanged": "dim", "failed": "red"}
    rows = result.files if len(result.files) <= 40 else [f for f in result.files if f.status == "failed"][:40]
    for f in rows:
        table.add_row(escape(Path(f.path).name), f"[{style[f.status]}]{f.status}[/]", str(f.pages),
                      (f.doc_id or "")[:12], escape(_detail(f)))
    out.print(table)
    out.print(f"[green]{result.count('ingested')} ingested[/], {result.count('unchanged')} unchanged, "
              f"[red]{result.count('failed')} failed[/]; {_n(result.pages, 'page')}")


@app.command()
def search(
    question: Annotated[str | None, typer.Argument(help="the question")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="pages to return")] = 5,
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    doc: Annotated[list[str] | None, typer.Option("--doc", help="restrict to these documents (id or name)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    queries: Annotated[Path | None, typer.Option("--queries", help='JSONL of {"id", "question"}')] = None,
    documents: Annotated[bool, typer.Option("--documents", help="rank documents (by their best page) instead of "
                                                                "pages")] = False,
) -> None:
    """Search pages: hybrid BM25 + text encoder + SigLIP, fused; shows the matching words of each page."""
    if (question is None) == (queries is None):
        err.print("give either a QUESTION or --queries FILE.jsonl")
        raise typer.Exit(2)
    if documents:
        if question is None or doc:
            err.print("--documents ranks the whole store (or --collection) for one QUESTION")
            raise typer.Exit(2)
        with _session(read_only=True) as svc:
            ranked = svc.search_documents(question, k=k, collection=collection)
        if as_json:
            print(json.dumps(ranked, indent=2))
            return
        if not ranked:
            out.print(_nothing_found(collection, "documents"))
        for rank, d in enumerate(ranked, 1):
            pages = ", ".join(map(str, d["pages"][:8])) + (" …" if len(d["pages"]) > 8 else "")
            out.print(f"[bold]{rank}.[/] {escape(Path(d['name']).name)}  [dim]{d['doc_id'][:12]} · pages {pages}[/]")
        return
    with _session(read_only=True) as svc:
        doc_ids = [svc.get_document(d).doc_id for d in doc] if doc else None
        if queries is not None:
            failed = _batch_search(svc, queries, k, collection, doc_ids)
            raise typer.Exit(1 if failed else 0)
        assert question is not None
        hits = svc.search(question, k=k, collection=collection, doc_ids=doc_ids)
    if as_json:
        print(json.dumps([h.model_dump(mode="json") for h in hits], indent=2))
        return
    if not hits:
        out.print(_nothing_found(collection))
    for rank, h in enumerate(hits, 1):  # page text and names are text, never markup
        out.print(f"[bold]{rank}.[/] {escape(Path(h.path).name)} p.{h.page}  [dim]relevance {h.relevance:.2f} "
                  f"(score {h.score:.4f}) · {h.doc_id[:12]}[/]\n   [cyan]{escape(h.snippet[:200])}[/]", soft_wrap=True)


def _nothing_found(collection: str | None, what: str = "pages") -> str:
    """Why a search found nothing: no such collection, nothing ingested, or no match."""
    with _session(read_only=True) as svc:
        docs = svc.list_documents()
    if not docs:
        return "nothing is ingested yet: pagelens ingest FILE... (see pagelens docs list)"
    names = sorted({d.collection for d in docs})
    if collection is not None and collection not in names:
        return escape(f"no collection '{collection}'; there are: {', '.join(names)[:300]}")
    return f"no matching {what}"


def _parse_line(line: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """One JSONL line as an object with ``keys``. Raises InputError saying what the line must be."""
    try:
        q = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"not a JSON object ({e})") from e
    if not isinstance(q, dict) or any(k not in q for k in keys):
        raise InputError(f"each line must be a JSON object with {', '.join(map(repr, keys))}")
    return q


def _run_batch(path: Path, keys: tuple[str, ...], answer: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Print ``answer(line)`` as one JSON line for each line of the JSONL file ``path``. A bad line (bad JSON,
    missing keys, or an InputError from ``answer``) prints ``{"line": n, "id": ..., "error": {code, message}}``
    and the batch goes on. Returns the number of failed lines; raises InputError if the file is missing."""
    if not path.is_file():
        raise InputError(f"{path} does not exist; give a JSONL file with one query per line")
    failed = 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        q: dict[str, Any] = {}
        try:
            q = _parse_line(line, keys)
            result = answer(q)
        except InputError as e:
            failed += 1
            result = {"line": n, **({"id": q["id"]} if "id" in q else {}),
                      "error": {"code": e.code, "message": e.message}}
        print(json.dumps(result), flush=True)
    return failed


def _batch_search(svc: Any, queries: Path, k: int, collection: str | None, doc_ids: list[str] | None) -> int:
    """``search --queries``: one JSON line of hits per question. Returns the number of failed lines."""
    def answer(q: dict[str, Any]) -> dict[str, Any]:
        hits = svc.search(q["question"], k=k, collection=collection, doc_ids=doc_ids)
        return {"id": q["id"], "hits": [{"doc_id": h.doc_id, "path": h.path, "page": h.page, "score": h.score}
                                        for h in hits]}

    return _run_batch(queries, ("id", "question"), answer)


@docs_app.command("list")
def docs_list(collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
              as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List documents."""
    with _session(read_only=True) as svc:
        docs = svc.list_documents(collection)
    if as_json:
        print(json.dumps([d.model_dump(mode="json") for d in docs], indent=2))
        return
    out.print(_docs_table(docs))


SOURCE_LABELS = {"text_layer": "text"}  # where the words of a page came from, as docs list shows it


def _docs_table(docs: list[Any]) -> Table:
    """The documents as a table that fits 80 columns, a row a line: 12-character ids, long names and collections
    cut with an ellipsis (``docs list --json`` has them whole), a word source named only when the pages mix them,
    pending stages as a mark explained under the table."""
    pending = sorted({stage for d in docs for stage in d.pending})
    note = f"* pending: {', '.join(pending)} (done by a later ingest once possible)" if pending else None
    table = Table(title=_n(len(docs), "document"), box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True, caption=note)
    table.add_column("doc", no_wrap=True, min_width=12)
    table.add_column("name", overflow="ellipsis", no_wrap=True, max_width=24)
    table.add_column("collection", overflow="ellipsis", no_wrap=True, max_width=12)
    table.add_column("pages", justify="right", no_wrap=True)
    table.add_column("words", overflow="ellipsis", no_wrap=True, max_width=12)
    table.add_column("status", no_wrap=True)
    for d in docs:
        sources = sorted(d.words_sources.items())
        words = (SOURCE_LABELS.get(sources[0][0], sources[0][0]) if len(sources) == 1
                 else " ".join(f"{SOURCE_LABELS.get(k, k)}:{v}" for k, v in sources))
        table.add_row(d.doc_id[:12], escape(Path(d.name).name), escape(d.collection), str(d.page_count), words,
                      d.status + ("*" if d.pending else ""))
    return table


@docs_app.command("show")
def docs_show(doc: Annotated[str, typer.Argument(help="document id, id prefix or file name")]) -> None:
    """Show one document as JSON."""
    with _session(read_only=True) as svc:
        print(svc.get_document(doc).model_dump_json(indent=2))


@docs_app.command("delete")
def docs_delete(doc: Annotated[str, typer.Argument(help="document id, id prefix or file name")]) -> None:
    """Delete a document: catalog rows, vectors and the stored file."""
    with _session(read_only=True) as svc:  # nothing to delete from a store that does not exist
        d = svc.delete_document(doc)
    out.print(f"deleted {d.doc_id[:12]} ({escape(Path(d.name).name)}, {_n(d.page_count, 'page')})")


@app.command()
def jobs(state: Annotated[str | None, typer.Option("--state", help="queued, running, done, failed or cancelled")]
         = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the HTTP API's recent jobs (uploads and batch extractions), newest first, with their progress."""
    from typing import get_args

    from schemas.jobs import JobState

    if state is not None and state not in get_args(JobState):
        raise _fail(InputError(f"--state {state}: give one of {', '.join(get_args(JobState))}"))
    with _session(read_only=True) as svc:
        found = svc.list_jobs(state)
    if as_json:
        print(json.dumps([j.model_dump(mode="json") for j in found], indent=2))
        return
    table = Table(title=_n(len(found), "job"), box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("job", "kind", "state", "files", "pages", "errors", "created"):
        table.add_column(col, no_wrap=True)
    for j in found:
        p = j.progress
        table.add_row(j.job_id[:12], j.kind, j.state + (" (stopping)" if j.cancel_requested and j.state == "running"
                                                        else ""),
                      f"{p.files_done}/{p.files_total}", f"{p.pages_done}/{p.pages_total}", str(len(j.errors)),
                      f"{j.created_at:%Y-%m-%d %H:%M:%S}")
    out.print(table)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    k: Annotated[int, typer.Option("-k", min=1, max=20, help="pages to read")] = 3,
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    doc: Annotated[list[str] | None, typer.Option("--doc", help="restrict to these documents")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    conversation: Annotated[str | None, typer.Option(
        "--conversation", metavar="ID", help="ask in this conversation (a follow-up is rewritten with its history "
                                             "before retrieval); 'new' starts one and prints its id")] = None,
) -> None:
    """Answer a question from the retrieved pages, with evidence boxes checked against the page's words."""
    if conversation is not None:
        if doc:
            err.print("--doc and --conversation do not go together: a conversation asks in its collection")
            raise typer.Exit(2)
        _ask_in_conversation(question, conversation, k=k, collection=collection, as_json=as_json)
        return
    with _session(read_only=True) as svc:
        doc_ids = [svc.get_document(d).doc_id for d in doc] if doc else None
        answer = svc.ask(question, k=k, collection=collection, doc_ids=doc_ids)
    if as_json:
        print(answer.model_dump_json(indent=2))
        return
    print_answer(answer)


def print_answer(answer: Any, names: dict[str, str] | None = None) -> None:
    out.print(f"[bold]{escape(answer.answer)}[/]" if answer.found else f"[yellow]{escape(answer.answer)}[/]")
    for ev in answer.evidence:
        color = {"verified": "green", "approximate": "yellow", "unverified": "red"}[ev.status]
        where = escape((names or {}).get(ev.doc_id, ev.doc_id[:12]))
        out.print(f"  [{color}]{ev.status}[/] p.{ev.page} {where}: \"{escape(ev.quote)}\" "
                  f"[dim](confidence {ev.confidence:.2f})[/]")


def _ask_in_conversation(question: str, conversation: str, *, k: int, collection: str | None,
                         as_json: bool) -> None:
    with _session(read_only=True) as svc:
        if conversation == "new":
            conversation = svc.start_conversation(collection=collection).id
            err.print(f"conversation {conversation} (go on with: pagelens ask \"…\" --conversation {conversation})")
        elif collection is not None:
            err.print("--collection applies to a new conversation only; this one asks where it started")
        turn = svc.converse(conversation, question, k=k)
    if as_json:
        print(json.dumps({"conversation_id": conversation, **turn.model_dump(mode="json")}, indent=2))
        return
    if turn.standalone != turn.question:
        err.print(f"[dim]searched as: {escape(turn.standalone)}[/]", soft_wrap=True)
    print_answer(turn.answer, {c.doc_id: c.document for c in turn.citations})


@app.command()
def extract(
    schema: Annotated[str, typer.Option("--schema", help="a JSON Schema file (.json) or module:PydanticModel")],
    files: Annotated[list[Path] | None, typer.Argument(help="files to ingest and extract from")] = None,
    doc: Annotated[list[str] | None, typer.Option("--doc", help="ingested documents (id or name)")] = None,
    max_pages: Annotated[int, typer.Option("--max-pages", min=1, max=64)] = 8,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    each: Annotated[bool, typer.Option("--each", help="one extraction per document (FILE... may be folders)")] = False,
    out_path: Annotated[Path | None, typer.Option("--out", help="--each: results as JSONL, a line each")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="--each: results as CSV, one row a document")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, max=256,
                                                    help="--each: extractions in flight (default: "
                                                         "PAGELENS_VLM__CONCURRENCY)")] = None,
    ray: Annotated[str | None, typer.Option("--ray", metavar="ADDRESS",
                                            help="--each: read new files on a Ray cluster (see ingest --ray); "
                                                 "the requests go to PAGELENS_VLM_URL's replicas")] = None,
) -> None:
    """Extract the schema's fields, each with its value, boxes, confidence and verification status. Needs a VLM
    (PAGELENS_VLM_URL, or PAGELENS_VLM__BACKEND=transformers); offline, PAGELENS_VLM__BACKEND=words reads labelled
    values from the pages' own words. With --each,
    one extraction per document, several at once, resumable: documents already extracted with the same schema,
    model and prompt are skipped."""
    if not files and not doc:
        err.print("give FILE... or --doc ID...")
        raise typer.Exit(2)
    if each:
        raise typer.Exit(_extract_each(schema, files or [], doc or [], max_pages, out_path, csv_path, concurrency,
                                       ray))
    if out_path or csv_path or concurrency or ray:
        err.print("--out, --csv, --concurrency and --ray go with --each")
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
    from app.service import also_found

    table = Table(title=f"extraction {result.id[:12]} · {result.model}")
    for col in ("field", "value", "status", "confidence", "page"):
        table.add_column(col, overflow="fold")
    for f in result.fields:
        color = {"verified": "green", "approximate": "yellow", "unverified": "red"}[f.status]
        pages = ",".join(str(b.page) for b in f.boxes)
        value = escape(str(f.value))
        if f.alternatives:  # other page windows of a long document said something else: shown, not dropped
            value += f"\n[yellow]also found: {escape(also_found(f))}[/]"
        note = f"\n[dim]{escape(f.note)}[/]" if f.note else ""
        conf = f"{f.confidence:.2f}" + (f"\n[dim]verifier {f.raw_confidence:.2f}[/]"
                                         if f.calibrated and f.raw_confidence is not None else "")
        table.add_row(escape(f.path), value, f"[{color}]{f.status}[/]{note}", conf, pages)
    out.print(table)
    if result.calibration:
        out.print(f"[dim]confidence: the probability a value is right, by calibration profile {result.calibration}[/]")
    elif result.calibration_note:
        out.print(f"[yellow]note[/]: {escape(result.calibration_note)}", soft_wrap=True)


def _extract_each(schema: str, files: list[Path], docs: list[str], max_pages: int, out_path: Path | None,
                  csv_path: Path | None, concurrency: int | None, ray: str | None = None) -> int:
    """``extract --each``: ingest what is new, then one extraction per document with a progress bar; results
    stream to --out as they finish. Returns the exit code (1 when a document failed)."""
    from app.batch import BatchResult, to_csv

    failed: list[BatchResult] = []
    with _session() as svc:
        svc.vlm()  # no VLM: say how before ingesting anything
        targets = [(d.doc_id, d.name) for d in (svc.get_document(r) for r in docs)]
        if files:
            bar, on_progress = _progress_bar()
            with bar:
                report = svc.ingest(list(files), on_progress=on_progress, ray=ray)
            for f in report.files:
                if f.status == "failed" or f.doc_id is None:
                    failed.append(BatchResult(doc_id=f.doc_id, path=f.path, status="failed",
                                              error={"code": f.error.code if f.error else "failed",
                                                     "message": f.error.message if f.error else "not ingested"}))
                else:
                    targets.append((f.doc_id, f.path))
        targets = list({doc_id: (doc_id, name) for doc_id, name in reversed(targets)}.values())[::-1]  # once each
        sink = out_path.open("w", encoding="utf-8") if out_path else None
        try:
            for r in failed:
                if sink:
                    sink.write(r.model_dump_json() + "\n")
            with Progress(TextColumn("[bold]extracting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          TimeRemainingColumn(), console=err, transient=True) as bar:
                task = bar.add_task("extract", total=len(targets))

                def done(r: BatchResult) -> None:
                    bar.advance(task)
                    if sink:
                        sink.write(r.model_dump_json() + "\n")
                        sink.flush()

                results = failed + svc.extract_each(schema, targets, max_pages=max_pages, concurrency=concurrency,
                                                    on_result=done)
        finally:
            if sink:
                sink.close()
    if csv_path:
        csv_path.write_text(to_csv(results), encoding="utf-8")
    counts = {s: sum(r.status == s for r in results) for s in ("extracted", "skipped", "failed")}
    for r in results:
        if r.status == "failed" and r.error:
            err.print(f"[red]failed[/] {escape(Path(r.path).name)}: {escape(r.error['message'])}", soft_wrap=True)
    out.print(f"{counts['extracted']} extracted, {counts['skipped']} already done (same schema, model and "
              f"prompt), {counts['failed']} failed" + (f"; results: {out_path}" if out_path else ""))
    return 1 if counts["failed"] else 0


@app.command()
def locate(
    queries: Annotated[Path, typer.Option("--queries", help='JSONL: {"id","doc_id","page","value","near"}')],
) -> None:
    """The verifier alone: where on this page is this value? One JSON result per input line."""
    def answer(q: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(q["page"], int) or isinstance(q["page"], bool):
            raise InputError(f"page must be a 1-based integer, got {q['page']!r}")
        res = svc.locate(q["doc_id"], q["page"], q["value"], q.get("near"))
        return {"id": q["id"], **res.model_dump(exclude={"id"})}

    with _session(read_only=True) as svc:
        failed = _run_batch(queries, ("id", "doc_id", "page", "value"), answer)
    raise typer.Exit(1 if failed else 0)


GoldOpt = Annotated[Path, typer.Option("--gold", help="gold JSONL file")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="write the JSON report here")]
CompareOpt = Annotated[Path | None, typer.Option("--compare", help="an earlier JSON report: show what changed")]


@eval_app.command("retrieval")
def eval_retrieval(gold: GoldOpt, k: Annotated[int, typer.Option("-k", min=1, max=100)] = 5,
                   collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
                   out_path: OutOpt = None, compare_to: CompareOpt = None) -> None:
    """Search every gold question ({"id","question","doc","pages":[...]}): hit@k, recall@k, MRR, nDCG@k, misses."""
    from app import evaluation as ev

    with _session(read_only=True) as svc:
        items, bad = ev.load_gold(gold, ev.RetrievalGold)
        with _item_bar(len(items), "searching") as tick:
            report = ev.eval_retrieval(svc, items, k=k, collection=collection, on_item=tick)
    _finish_eval(report, bad, out_path, compare_to,
                 miss_row=lambda i: (i["id"], i["question"][:40], f"{i['doc']} p.{i['pages'][0]}",
                                     "; ".join(i["got"])), miss_cols=("id", "question", "expected", "got (top 3)"))


@eval_app.command("locate")
def eval_locate(gold: GoldOpt, out_path: OutOpt = None, compare_to: CompareOpt = None) -> None:
    """Run the verifier on every gold value ({"id","doc","page","value","box"}): hit rate at IoU ≥ 0.5, status
    rates, absent values (box null) that must come back unverified."""
    from app import evaluation as ev

    with _session(read_only=True) as svc:
        items, bad = ev.load_gold(gold, ev.LocateGold)
        with _item_bar(len(items), "locating") as tick:
            report = ev.eval_locate(svc, items, on_item=tick)
    _finish_eval(report, bad, out_path, compare_to,
                 miss_row=lambda i: (i["id"], i["value"][:40], i["status"], f"{i['iou']:.2f}", i["note"] or ""),
                 miss_cols=("id", "value", "status", "IoU", "note"))


@eval_app.command("extract")
def eval_extract(gold: GoldOpt,
                 schema: Annotated[str, typer.Option("--schema", help="JSON Schema file or module:Model")],
                 max_pages: Annotated[int, typer.Option("--max-pages", min=1, max=64)] = 8,
                 plot: Annotated[Path | None, typer.Option("--plot", help="reliability diagram (PNG) here")] = None,
                 out_path: OutOpt = None, compare_to: CompareOpt = None) -> None:
    """Extract every gold document ({"id","doc","data",["boxes"]}): per-field exact match and ANLS, document
    ANLS*, box IoU, status rates, and calibration — accuracy per confidence bucket, ECE, a reliability plot."""
    from app import evaluation as ev

    with _session(read_only=True) as svc:
        items, bad = ev.load_gold(gold, ev.ExtractGold)
        svc.vlm()  # no VLM configured: say how before reading anything
        with _item_bar(len(items), "extracting") as tick:
            report = ev.eval_extract(svc, items, schema, max_pages=max_pages, on_item=tick)
    calibrated = report["metrics"]["calibrated_rate"] > 0
    if plot is not None:
        from app.reliability import reliability_png

        report["plot"] = str(reliability_png(report["calibration"], plot,
                                             "calibrated confidence" if calibrated else "extraction confidence"))
        out.print(f"reliability plot: {plot}")
        if calibrated:
            raw_plot = plot.with_name(f"{plot.stem}-raw{plot.suffix}")
            report["plot_raw"] = str(reliability_png(report["calibration_raw"], raw_plot, "raw confidence"))
            out.print(f"reliability plot of the raw confidence: {raw_plot}")
    for key, title in (("calibration_raw", "raw confidence"), ("calibration", "calibrated confidence")) \
            if calibrated else (("calibration", "confidence (no calibration profile applied)"),):
        cal = Table(box=box.SIMPLE_HEAD, title=f"{title}: does a 0.9 mean 90 %? (ECE {report[key]['ece']:.3f})")
        for c in ("confidence bucket", "fields", "mean confidence", "accuracy"):
            cal.add_column(c, justify="right")
        for r in report[key]["buckets"]:
            if r["n"]:
                cal.add_row(f"{r['lo']:.1f}–{r['hi']:.1f}", str(r["n"]), f"{r['confidence']:.2f}",
                            f"{r['accuracy']:.2f}")
        out.print(cal)
    _finish_eval(report, bad, out_path, compare_to,
                 miss_row=lambda i: (i["id"], str(i["gold"])[:30], str(i["value"])[:30], i["status"],
                                     f"{i['anls']:.2f}"),
                 miss_cols=("id", "gold", "extracted", "status", "ANLS"))


@contextmanager
def _item_bar(total: int, what: str) -> Iterator[Callable[[], None]]:
    with Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)


def _finish_eval(report: dict[str, Any], bad: list[dict[str, Any]], out_path: Path | None,
                 compare_to: Path | None, *, miss_row: Callable[[dict[str, Any]], tuple[str, ...]],
                 miss_cols: tuple[str, ...], max_misses: int = 30) -> None:
    """Print the figures, the misses and the errors; write the report; compare with an earlier one."""
    from app import evaluation as ev

    report["errors"] = bad + report["errors"]
    t = Table(box=box.SIMPLE_HEAD, title=f"{report['kind']} evaluation")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for name, value in report["metrics"].items():
        if isinstance(value, dict):
            for sub, v in value.items():
                t.add_row(escape(f"{name}[{sub}]"), f"{v:.3f}")
        else:
            t.add_row(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    out.print(t)
    misses = [i for i in report["items"] if not i["hit"]]
    if misses:
        m = Table(box=box.SIMPLE_HEAD, title=f"misses ({len(misses)}"
                                               f"{f', first {max_misses}' if len(misses) > max_misses else ''})")
        for c in miss_cols:
            m.add_column(c, overflow="fold")
        for i in misses[:max_misses]:
            m.add_row(*(escape(str(x)) for x in miss_row(i)))
        out.print(m)
    for e in report["errors"]:
        err.print(f"[yellow]gold[/] {escape(json.dumps(e))}", soft_wrap=True)
    if compare_to is not None:
        try:
            old = json.loads(compare_to.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise _fail(InputError(f"cannot read the report to compare with ({compare_to}): {e}")) from e
        try:
            diff = ev.compare(old, report)
        except InputError as e:
            raise _fail(e) from e
        report["compared_to"] = {"path": str(compare_to), **diff}
        deltas = ", ".join(f"{k} {v:+.3f}" for k, v in diff["deltas"].items() if v)
        if diff["differs"]:
            out.print(f"[yellow]note[/]: the runs differ in {escape('; '.join(diff['differs']))}")
        out.print(f"vs {escape(compare_to.name)}: {deltas or 'no metric changed'}; {len(diff['better'])} better "
                  f"({', '.join(diff['better'][:10])}), {len(diff['worse'])} worse ({', '.join(diff['worse'][:10])})")
    if out_path is not None:
        out_path.write_text(json.dumps(report, indent=1))
        out.print(f"report: {out_path}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    from app.serve import serve_data_dir
    from schemas.settings import load_settings

    try:
        settings = load_settings()
    except PageLensError as e:
        raise _fail(e) from e
    if not is_loopback(host) and not settings.api_key:
        err.print(f"[yellow]warning[/]: serving on {host} without PAGELENS_API_KEY: anyone who can reach this "
                  "machine can read and delete documents; set PAGELENS_API_KEY or bind 127.0.0.1", soft_wrap=True)
    try:
        serve_data_dir(settings, host=host, port=port)
    except PageLensError as e:
        raise _fail(e) from e


@app.command()
def mcp() -> None:
    """Serve PageLens to agents over MCP on stdio (for desktop clients: Claude Desktop, IDEs): the tools search,
    ask, extract, locate, list_documents and get_page, each answer with its evidence boxes. Acts as the key in
    PAGELENS_MCP_KEY, else as this data dir's owner; through the running server when one owns the data dir. Over
    HTTP, the same tools are at /mcp of pagelens serve."""
    import os

    from app.mcp_server import KEY_ENV, build_server, stdio_acting

    with _session(read_only=True) as svc:
        acting = stdio_acting(svc, os.environ.get(KEY_ENV) or None)
        err.print("[dim]PageLens MCP server on stdio (Ctrl-C to stop)[/]")
        build_server(acting).run("stdio")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


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
    if not is_loopback(host):
        with _session() as svc:  # closed (and the data dir let go) before the UI takes it
            shared = svc.auth_required()
        if not shared:
            err.print(f"[yellow]warning[/]: serving the UI on {escape(host)} with no API key: anyone who can reach "
                      "this machine can read and delete documents; create one (pagelens keys create --name you "
                      "--role admin) and the UI asks for it, or bind 127.0.0.1", soft_wrap=True)
    out.print(f"PageLens UI on http://{escape(host)}:{port}")
    # exec, not a child process: stopping `pagelens ui` must stop the server (it holds the embedded store)
    os.execv(sys.executable, cmd)


@app.command()
def demo(question: Annotated[str, typer.Argument()] = "scanned contracts") -> None:
    """Make a sample PDF (with a scanned page), ingest it and search it: the embedded defaults, end to end."""
    from app.demo import make_sample_pdf
    from schemas.settings import load_settings

    try:
        data_dir = load_settings().data_dir
    except PageLensError as e:
        raise _fail(e) from e
    sample = make_sample_pdf(data_dir / "samples" / "pagelens-sample.pdf")
    out.print(f"sample document: {escape(str(sample))}")
    try:
        ingest([sample], collection=None, password=None, report=None, workers=1)
    except typer.Exit as e:
        if e.exit_code:
            raise
    out.print(f'\n[bold]pagelens search "{escape(question)}"[/]')
    search(question, k=3, collection=None, doc=None, as_json=False, queries=None)


def main() -> None:
    try:
        app()
    except PageLensError as e:  # errors raised outside a command's own handling (e.g. the store is locked)
        sys.exit(_fail(e).exit_code)


if __name__ == "__main__":
    main()
