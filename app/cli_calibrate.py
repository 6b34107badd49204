"""``pagelens calibrate``: fit a calibration profile (extraction confidence → the probability a value is right) from a
gold set or reviewers' corrections, list and delete profiles. A profile applies to new extractions by its model
with its schema (``grounding.calibration``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from schemas.errors import InputError

if TYPE_CHECKING:
    from grounding.calibration import Labelled
    from schemas.answers import Extraction

calibrate_app = typer.Typer(no_args_is_help=True, help="Calibrated confidence: fit, list and delete the profiles "
                                                       "that turn a field's evidence into the probability that its "
                                                       "value is right.")


def _shell() -> Any:
    from app import cli

    return cli


@calibrate_app.command("fit")
def calibrate_fit(
    schema: Annotated[str, typer.Option("--schema", help="the JSON Schema file or module:Model it calibrates")],
    gold: Annotated[Path | None, typer.Option("--gold", help="gold JSONL, as for pagelens eval extract")] = None,
    from_corrections: Annotated[bool, typer.Option("--from-corrections", help="labels from the extractions of "
                                                   "this schema that reviewers corrected")] = False,
    method: Annotated[str, typer.Option("--method", help="auto (Platt below 80 labelled fields, isotonic "
                                        "from there), platt or isotonic")] = "auto",
    model: Annotated[str | None, typer.Option("--model", help="the model name the profile is for (default: the "
                                              "one that made the extractions)")] = None,
    max_pages: Annotated[int, typer.Option("--max-pages", min=1, max=64)] = 8,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="fit and report, but keep nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Fit a profile for one model and schema from labelled fields: a gold set (each document extracted, each field
    scored as eval extract does) and/or reviewers' corrections; kept in the catalog as the next version."""
    from app import evaluation as ev
    from app.calibration import fit_profile, labels_from_corrections, labels_from_gold, schema_identity

    cli = _shell()
    if method not in ("auto", "platt", "isotonic"):
        raise cli._fail(InputError(f"--method {method!r}: give auto, platt or isotonic"))
    if gold is None and not from_corrections:
        raise cli._fail(InputError("give the labels: --gold G.jsonl (as for pagelens eval extract) and/or "
                                   "--from-corrections"))
    with cli._session(read_only=True) as svc:
        _, schema_hash, kinds = schema_identity(schema)
        rows: list[Labelled] = []
        made: list[Extraction] = []
        sources: list[str] = []
        if gold is not None:
            items, bad = ev.load_gold(gold, ev.ExtractGold)
            svc.vlm()  # no VLM configured: say how before reading anything
            with cli._item_bar(len(items), "extracting") as tick:
                got, made, errors = labels_from_gold(svc, items, schema, max_pages=max_pages, on_item=tick)
            for e in bad + errors:
                cli.err.print(f"[yellow]gold[/] {escape(json.dumps(e))}", soft_wrap=True)
            rows += got
            sources.append(f"gold {gold.name} ({len(got)} fields)")
        if from_corrections:
            reviewed = svc.corrected_extractions(schema_hash)
            got = labels_from_corrections(reviewed, kinds)
            made += [ex for ex, _ in reviewed]
            rows += got
            sources.append(f"corrections of {len(reviewed)} records ({len(got)} fields)")
        profile = fit_profile(rows, made, schema_hash=schema_hash, source="; ".join(sources),
                              method=method, model=model)  # type: ignore[arg-type]
        if not dry_run:
            profile = svc.save_calibration(profile)
    if as_json:
        print(profile.model_dump_json(indent=2))
        return
    cli.out.print(f"{'fitted (not kept: --dry-run)' if dry_run else 'kept'} calibration profile "
                  f"[bold]{profile.ref}[/] for model {escape(profile.model)} and schema {profile.schema_hash}: "
                  f"{profile.method}, {profile.rows} labelled fields ({profile.right} right), "
                  f"ECE {profile.ece_raw:.3f} raw → {profile.ece_cv:.3f} calibrated (5-fold cross-validated)",
                  soft_wrap=True)


@calibrate_app.command("list")
def calibrate_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every profile, newest first (the newest version for a model and schema is the one applied)."""
    cli = _shell()
    with cli._session(read_only=True) as svc:
        found = svc.calibrations()
    if as_json:
        print(json.dumps([p.model_dump(mode="json") for p in found], indent=2))
        return
    if not found:
        cli.err.print("no calibration profiles: fit one with pagelens calibrate fit --gold G.jsonl --schema S")
        return
    t = Table(box=box.SIMPLE, show_edge=False)
    for c in ("id", "version", "model", "schema", "method", "fields", "ECE raw", "ECE", "created", "source"):
        t.add_column(c, no_wrap=c in ("id", "version", "ECE raw", "ECE"))
    for p in found:
        t.add_row(p.id[:12], str(p.version), escape(p.model), p.schema_hash, p.method, str(p.rows),
                  f"{p.ece_raw:.3f}", f"{p.ece_cv:.3f}", p.created_at.strftime("%Y-%m-%d %H:%M"), escape(p.source))
    cli.out.print(t)


@calibrate_app.command("delete")
def calibrate_delete(profile_id: Annotated[str, typer.Argument(help="id (or prefix) from pagelens calibrate list")]
                     ) -> None:
    """Delete one profile version (the previous version, if any, applies again)."""
    cli = _shell()
    with cli._session() as svc:
        gone = svc.delete_calibration(profile_id)
    cli.out.print(f"deleted calibration profile {gone.ref} ({escape(gone.model)} / {gone.schema_hash})")
