"""The PageLens web UI (Streamlit): Library, Search, Ask, Extract, Jobs. A thin shell over app.service — every
action is a service call; this module only lays out widgets, shows progress, and turns errors into plain words.

Run with ``pagelens ui [--port N]``."""

from __future__ import annotations

import html
import json
import multiprocessing
from pathlib import Path
from typing import Any

import streamlit as st

from app.access import Acting
from app.remote import open_service
from schemas.coords import BBox
from schemas.errors import ModelUnavailable, PageLensError
from schemas.jobs import ACTIVE_STATES, Job
from vlm.backend import HOW_TO_CONFIGURE

STATUS_STYLE = {"verified": ("#16a34a", "verified — found on the page, box snapped to its words"),
                "approximate": ("#d97706", "approximate — fuzzy match, or found elsewhere on the page"),
                "unverified": ("#dc2626", "unverified — not on the page: likely a hallucination")}


@st.cache_resource
def base_service() -> Any:
    """The UI's way to the data dir: the running PageLens server that owns it (its API), else a Service here."""
    return open_service()


def service() -> Any:
    """The service as this browser session's signed-in key (the local admin when no key is configured)."""
    return st.session_state.get("acting") or base_service()


def whoami() -> str:
    who = st.session_state.get("who")
    return who.name if who is not None else ""


@st.cache_data(max_entries=256, show_spinner=False)
def _page_png(who: str, doc_id: str, page: int, width: int, boxes: tuple[tuple[tuple[float, ...], str], ...],
              crop: tuple[float, ...] | None) -> bytes:
    # ``who`` is part of the cache key: one session's pages are never served to another from the cache
    return service().page_png(doc_id, page, width=width, boxes=[(BBox.of(b), s) for b, s in boxes],
                              crop=BBox.of(crop) if crop else None)


def page_png(doc_id: str, page: int, width: int, boxes: tuple[tuple[tuple[float, ...], str], ...] = (),
             crop: tuple[float, ...] | None = None) -> bytes:
    return _page_png(whoami(), doc_id, page, width, boxes, crop)


def sign_in(base: Any) -> None:
    """The sign-in form, when this PageLens has keys: the session then acts as the key given."""
    st.title("PageLens")
    st.info("This PageLens is shared: sign in with your API key (ask its admin for one: pagelens keys create).",
            icon=":material/key:")
    with st.form("sign-in"):
        key = st.text_input("API key", type="password")
        if st.form_submit_button("Sign in", type="primary") and key:
            who = base.sign_in(key)
            if who is None:
                st.error("That key is wrong, revoked or expired.", icon=":material/error:")
                return
            st.session_state["who"] = who
            st.session_state["acting"] = base.as_key(key) if hasattr(base, "as_key") else Acting(base, who)
            st.rerun()


def show_page(target: Any, doc_id: str, page: int, width: int,
              boxes: tuple[tuple[tuple[float, ...], str], ...] = (), crop: tuple[float, ...] | None = None,
              caption: str | None = None) -> None:
    """A page image in ``target`` (``st`` or a column); a page that cannot be drawn (a malformed page, a missing
    file) shows why in its place and never hides the rest of the screen."""
    try:
        target.image(page_png(doc_id, page, width, boxes, crop), caption=caption, width="stretch")
    except PageLensError as e:
        target.warning(f"Page {page} cannot be shown: {e.message}", icon=":material/broken_image:")


def fail(e: Exception) -> None:
    """Show an error in plain words (never a traceback)."""
    if isinstance(e, PageLensError):
        st.error(text(e.message), icon=":material/error:")
    else:
        st.error(f"Something went wrong ({e.__class__.__name__}: {e}). The details are in the server log.",
                 icon=":material/error:")


MARKDOWN_SPECIAL = "\\`*_{}[]()#|~$!"  # emphasis, links, code, headings, tables, math


def plain(text: str) -> str:
    """User-controlled text (file names, page words, quotes) made inert for st.markdown with HTML allowed: HTML
    escaped, Markdown punctuation backslash-escaped (no tags, links or emphasis from a file name)."""
    return "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in html.escape(text, quote=True))


def text(value: str) -> str:
    """User-controlled text made inert for Streamlit elements that render Markdown but not HTML (success, error,
    caption, progress labels): Markdown punctuation backslash-escaped, so a model's answer or a file name can
    never become a link, an image fetched from elsewhere, or emphasis."""
    return "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in value)


def outcome_message(name: str, code: str, message: str) -> str:
    """An ingest error in this page's terms: the reader's messages speak of the CLI's --password."""
    if code == "password_required":
        return f"{name} is password protected; enter its password in the Password field and ingest it again"
    if code == "wrong_password":
        return f"the password given does not open {name}; check the Password field and ingest it again"
    return f"{name}: {message}"


def legend() -> None:
    st.markdown(" &nbsp; ".join(f"<span style='border:3px solid {c};padding:1px 6px;border-radius:4px'>{t}</span>"
                                for c, t in STATUS_STYLE.values()), unsafe_allow_html=True)


def vlm_ready() -> bool:
    if service().vlm_name() == "none":
        st.info(HOW_TO_CONFIGURE[0].upper() + HOW_TO_CONFIGURE[1:], icon=":material/info:")
        return False
    return True


def doc_label(docs: dict[str, Any], doc_id: str) -> str:
    d = docs[doc_id]
    return f"{Path(d.name).name} · {d.page_count} p · {doc_id[:8]}"


# ---------------------------------------------------------------------------------------------------------------


def library_page() -> None:
    st.header("Library")
    svc = service()
    with st.form("upload", clear_on_submit=True):
        files = st.file_uploader("Add PDFs or page images", type=["pdf", "png", "jpg", "jpeg", "tif", "tiff"],
                                 accept_multiple_files=True)
        c1, c2 = st.columns(2)
        who = st.session_state.get("who")
        mine = who.collections[0] if who is not None and who.collections else svc.settings.default_collection
        collection = c1.text_input("Collection", value=mine)
        password = c2.text_input("Password (for encrypted PDFs)", type="password")
        submitted = st.form_submit_button("Ingest", type="primary")
    if submitted and files:
        said: set[str] = set()  # a pipeline notice (no SigLIP, no VLM) is shown once per submit, not per file
        for f in files:
            bar = st.progress(0.0, text=f"{f.name}: reading…")

            def on_progress(p: Any, bar: Any = bar, name: str = f.name) -> None:
                if p.pages_total:
                    bar.progress(min(1.0, p.pages_done / p.pages_total), text=text(f"{name}: {p.pages_done}/"
                                 f"{p.pages_total} pages"))
                if p.notice and p.notice not in said:
                    said.add(p.notice)
                    st.caption(p.notice)

            try:
                report = svc.ingest_files([(f.name, f.getvalue())], collection=collection or None,
                                          password=password or None, on_progress=on_progress)
            except PageLensError as e:
                fail(e)
                continue
            outcome = report.files[0]
            bar.progress(1.0, text=text(f"{f.name}: {outcome.status}"))
            if outcome.status == "failed" and outcome.error:
                bar.empty()  # a failed file never looks finished
                st.error(text(outcome_message(f.name, outcome.error.code, outcome.error.message)),
                         icon=":material/error:")
            else:
                pending = f" (pending: {', '.join(outcome.pending)})" if outcome.pending else ""
                st.success(text(f"{f.name}: {outcome.status}, {outcome.pages} page"
                                f"{'' if outcome.pages == 1 else 's'}{pending}"),
                           icon=":material/check_circle:")
    docs = svc.list_documents()
    collections = sorted({d.collection for d in docs})
    shown = st.selectbox("Collection filter", ["(all)", *collections])
    rows = [{"document": Path(d.name).name, "pages": d.page_count, "collection": d.collection, "status": d.status,
             "words": ", ".join(f"{'OCR' if k == 'ocr' else 'text layer' if k == 'text_layer' else k}: {v}"
                                for k, v in sorted(d.words_sources.items())),
             "pending": ", ".join(d.pending), "id": d.doc_id[:12]}
            for d in docs if shown == "(all)" or d.collection == shown]
    st.caption(f"{len(rows)} document{'' if len(rows) == 1 else 's'}")
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
        by_id = {d.doc_id: d for d in docs}
        target = st.selectbox("Delete a document", [None, *by_id], format_func=lambda x: "—" if x is None
                              else doc_label(by_id, x))
        if target and st.button("Delete", type="secondary"):
            try:
                svc.delete_document(target)
                st.success("Deleted.")
                st.rerun()
            except PageLensError as e:
                fail(e)


def search_page() -> None:
    st.header("Search")
    svc = service()
    with st.form("search"):
        q = st.text_input("Question", placeholder="e.g. linear regression diagnostics")
        c1, c2 = st.columns(2)
        k = c1.slider("Pages", 1, 20, 6)
        collections = ["(all)", *sorted({d.collection for d in svc.list_documents()})]
        coll = c2.selectbox("Collection", collections)
        go = st.form_submit_button("Search", type="primary")
    if go and q.strip():
        try:
            st.session_state["hits"] = svc.search(q, k=k, collection=None if coll == "(all)" else coll)
        except PageLensError as e:
            fail(e)
            return
    hits = st.session_state.get("hits", [])
    if go and not hits:
        st.info("No matching pages. Is anything ingested? See the Library.")
    cols = st.columns(3)
    for i, h in enumerate(hits):
        with cols[i % 3]:
            boxes = tuple((tuple(w.bbox.as_list()), "match") for w in h.words)
            show_page(st, h.doc_id, h.page, 360, boxes)  # one page that cannot be drawn never hides the others
            words = " ".join(dict.fromkeys(w.text for w in h.words))[:80]
            st.markdown(f"**{i + 1}. {plain(Path(h.path).name)}** · page {h.page}  \n"  # names, words: user data
                        f"<small>relevance {h.relevance:.2f} · {plain(h.snippet[:160] or words)}</small>",
                        unsafe_allow_html=True)
            if st.button("Open large", key=f"open-{i}"):
                st.session_state["large"] = (h.doc_id, h.page, boxes)
    if large := st.session_state.get("large"):
        st.divider()
        show_page(st, large[0], large[1], 1100, large[2], caption=f"page {large[1]}")


def ask_page() -> None:
    """A chat over the documents: each conversation is kept (``pagelens conversations``), each follow-up is
    rewritten with the history before retrieval, and each citation opens its page with its box drawn."""
    st.header("Ask")
    if not vlm_ready():
        return
    svc = service()
    cid = conversation_picker(svc)
    k = st.sidebar.slider("Pages to read", 1, 8, 3, key="ask-k")
    conv = None
    if cid is not None:
        try:
            conv = svc.get_conversation(cid)
        except PageLensError as e:
            fail(e)
            st.session_state.pop("conversation", None)
            return
    for turn in conv.turns if conv else []:
        show_turn(turn, cid or "")
    q = st.chat_input("Ask a question about your documents" if conv is None or not conv.turns
                      else "Ask a follow-up")
    if q and q.strip():
        with st.chat_message("user"):
            st.text(q)
        with st.spinner("Reading the pages…"):
            try:
                if cid is None:
                    cid = svc.start_conversation().id
                    st.session_state["conversation"] = cid
                svc.converse(cid, q, k=k)
            except (PageLensError, ModelUnavailable) as e:
                fail(e)
                return
        st.session_state.pop("cite", None)
        st.rerun()


def conversation_picker(svc: Any) -> str | None:
    """The sidebar's conversations: the one shown (None: a new one, started by its first question)."""
    st.sidebar.markdown("**Conversations**")
    if st.sidebar.button("New conversation", icon=":material/add_comment:", key="new-conversation"):
        st.session_state.pop("conversation", None)
        st.session_state.pop("cite", None)
    try:
        convs = svc.list_conversations(30)
    except PageLensError as e:
        fail(e)
        return None
    current = st.session_state.get("conversation")
    ids = [None, *[c.id for c in convs]]
    if current not in ids:
        current = None
    labels = {c.id: f"{c.title[:40] or c.id} · {c.turns}" for c in convs}
    picked = st.sidebar.radio("Conversation", ids, index=ids.index(current), key=f"pick-{current}",
                              format_func=lambda i: "(new)" if i is None else labels[i],
                              label_visibility="collapsed")
    if picked != current:
        st.session_state["conversation"] = picked
        st.session_state.pop("cite", None)
        st.rerun()
    return picked


def show_turn(turn: Any, cid: str) -> None:
    """One question and its answer, with its citations as answered; a citation clicked shows its page, the box
    it had then drawn on it."""
    with st.chat_message("user"):
        st.text(turn.question)
    with st.chat_message("assistant"):
        answer = turn.answer
        if turn.standalone != turn.question:
            st.caption(f"searched as: {text(turn.standalone)}")
        # the model's words are text, never Markdown (an answer with ![x](http://…) must not make the browser
        # fetch it); green only when the answer's own values are in its verified evidence
        if answer.found and answer.consistent:
            st.success(text(answer.answer))
        elif answer.found:
            st.warning(text(answer.answer) + "  \n*Its values are not in the verified evidence below: check them on "
                       "the page.*")
        else:
            st.warning(text(answer.answer))
        opened = st.session_state.get("cite")
        for c in turn.citations:
            color, _ = STATUS_STYLE[c.status]
            c1, c2 = st.columns([6, 1])
            gone = f"  \n*{plain(c.note)}*" if c.state != "ok" else ""
            c1.markdown(f"<span style='color:{color}'>●</span> [{c.n}] **{c.status}** · {plain(Path(c.document).name)}"
                        f" · page {c.page} · confidence {c.confidence:.2f}  \n“{plain(c.quote)}”{gone}",
                        unsafe_allow_html=True)
            here = (cid, turn.n, c.n)
            if c.state != "removed" and c2.button("Open", key=f"cite-{cid}-{turn.n}-{c.n}",
                                                   help="open the page with this box drawn"):
                st.session_state["cite"] = None if opened == here else here
                st.rerun()
            if opened == here:
                boxes = ((tuple(c.bbox.as_list()), c.status),) if c.bbox is not None else ()
                show_page(st, c.doc_id, c.page, 900, boxes,
                          caption=f"{Path(c.document).name} · page {c.page} · citation {c.n}")


def extract_page() -> None:
    st.header("Extract")
    if not vlm_ready():
        return
    from vlm.presets import FIELD_TYPES, PRESETS, schema_from_fields

    svc = service()
    docs = {d.doc_id: d for d in svc.list_documents()}
    mode = st.radio("Schema", ["Preset", "Paste JSON Schema", "Build fields"], horizontal=True)
    schema: dict[str, Any] | None = None
    try:
        if mode == "Preset":
            schema = PRESETS[st.selectbox("Preset", list(PRESETS))]
            with st.expander("Schema"):
                st.json(schema)
        elif mode == "Paste JSON Schema":
            pasted = st.text_area("JSON Schema", height=200, placeholder='{"type": "object", "properties": {...}}')
            schema = json.loads(pasted) if pasted.strip() else None
        else:
            rows = st.data_editor([{"name": "invoice_number", "type": "text", "description": ""},
                                   {"name": "total", "type": "number", "description": "amount due"}],
                                  num_rows="dynamic", width="stretch",
                                  column_config={"type": st.column_config.SelectboxColumn(options=list(FIELD_TYPES))})
            schema = schema_from_fields(rows)
    except json.JSONDecodeError as e:
        st.error(f"That is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno}).", icon=":material/error:")
    except PageLensError as e:
        fail(e)
    chosen = st.multiselect("Documents", list(docs), format_func=lambda x: doc_label(docs, x))
    together = len(chosen) > 1 and st.checkbox("One record from all of them together (e.g. a contract and its "
                                               "annex)", value=False)
    if st.button("Extract", type="primary", disabled=schema is None or not chosen):
        # one record per document by default (as extract --each and the API's jobs do): two receipts are two records
        groups = [chosen] if together else [[d] for d in chosen]
        made: dict[str, str] = {}
        bar = st.progress(0.0, text="Extracting…")
        for n, group in enumerate(groups, 1):
            label = " + ".join(Path(docs[d].name).name for d in group)
            try:
                made[svc.extract(schema or {}, group).id] = label
            except PageLensError as e:
                fail(PageLensError(f"{label}: {e.message}", code=e.code))
            bar.progress(n / len(groups), text=text(f"Extracting… {n}/{len(groups)}"))
        bar.empty()
        if made:
            st.session_state["extractions"] = made
            st.session_state["extraction"] = next(iter(made))
    made = st.session_state.get("extractions", {})
    if len(made) > 1:
        st.session_state["extraction"] = st.selectbox("Record", list(made), format_func=lambda x: made[x])
    ex_id = st.session_state.get("extraction")
    if not ex_id:
        return
    ex, _ = svc.get_extraction(ex_id)
    st.caption(f"model {ex.model} · {ex.attempts} attempt(s) · schema {ex.schema_hash} · pages "
               + ", ".join(f"{p.page}" for p in ex.pages_used)
               + (f" · confidence calibrated by profile {ex.calibration} (the probability a value is right)"
                  if ex.calibration else " · confidence: the verifier's score (no calibration profile)"))
    if ex.calibration_note:
        st.info(text(ex.calibration_note), icon=":material/info:")
    legend()
    table = svc.extraction_table(ex_id)
    edited = st.data_editor(table, hide_index=True, width="stretch", key=f"fields-{ex_id}",
                            disabled=["field", "model_value", "corrected", "status", "confidence",
                                      "verifier_score", "pages", "also_found"])
    if ex.conflicts:
        st.warning(f"{len(ex.conflicts)} field(s) read differently on other pages: see *also_found*. The value "
                   "shown is the best verified one; check the others on their pages.", icon=":material/warning:")
    for before, after in zip(table, edited, strict=False):
        if str(after["value"]) != str(before["value"]):
            svc.correct_extraction(ex_id, before["field"], after["value"])
            st.toast(f"kept your correction of {before['field']}")
    c1, c2 = st.columns(2)
    c1.download_button("Export JSON", svc.export_extraction(ex_id, "json"), f"extraction-{ex_id[:8]}.json",
                       "application/json")
    c2.download_button("Export CSV", svc.export_extraction(ex_id, "csv"), f"extraction-{ex_id[:8]}.csv", "text/csv")
    field = st.selectbox("Show a field on its page", [f.path for f in ex.fields])
    f = next((f for f in ex.fields if f.path == field), None)
    if f is not None:
        if f.candidates:  # an ambiguous value: the reviewer sees every place it is printed, and picks
            st.warning(f"{text(field)} is printed in {len(f.candidates)} places equally well: each is drawn below "
                       "(the one shown first); correct the value above if the right one is another.")
            by_page: dict[tuple[str, int], list[Any]] = {}
            for c in f.candidates:
                by_page.setdefault((c.doc_id or "", c.page or 1), []).append(c)
            for (doc_id, page), cands in by_page.items():
                boxes = tuple((tuple(c.bbox.as_list()), "verified" if i == 0 else "approximate")
                              for i, c in enumerate(cands))
                show_page(st, doc_id, page, 800, boxes,
                          caption=f"{field} · page {page} · {len(cands)} candidates (green: the one shown)")
        for b in ([] if f.candidates else f.boxes):
            boxes = ((tuple(b.bbox.as_list()), f.status),) if b.bbox else ()
            show_page(st, b.doc_id, b.page, 800, boxes, caption=f"{field} · page {b.page} · {f.status}")
        if not f.boxes:
            st.info("This field has no box: it was not found on the pages.")


def job_label(job: Job) -> str:
    """One line about a job: kind, state, what it works on (file names as inert text), its id."""
    p = job.progress
    what = ", ".join(job.params.get("files", [])) if job.kind == "ingest" else f"{p.files_total} documents"
    count = f"{p.pages_done}/{p.pages_total} pages" if p.pages_total else f"{p.files_done}/{p.files_total} files"
    stopping = " (stopping…)" if job.cancel_requested and job.state == "running" else ""
    failed = len(job.errors)
    state: str = job.state
    if job.state == "done" and failed:
        state = f"done, {failed} of {p.files_total} failed" if failed < p.files_total else "every file failed"
    return text(f"{job.kind} · {state}{stopping} · {count} · {what[:80]} · {job.job_id[:8]}")


def jobs_page() -> None:
    """The API's jobs (uploads and batch extractions) as the catalog has them, newest first; running ones with a
    progress bar and a Cancel button (the job stops at its next file or page batch)."""
    st.header("Jobs")
    svc = service()
    st.caption("Uploads and batch extractions sent to the HTTP API (pagelens serve) run as jobs. "
               "Uploads made on this page's Library are ingested here directly.")
    st.button("Refresh")
    jobs = svc.list_jobs(limit=20)
    if not jobs:
        st.info("No jobs yet.")
        return
    for job in jobs:
        p = job.progress
        if job.state == "done":
            done = 1.0 - (len(job.errors) / p.files_total if p.files_total else 0.0)  # failed files never look done
        elif p.work_done is not None and p.files_total:
            done = p.work_done / p.files_total  # never goes back as more files are opened
        elif p.pages_total:
            done = p.pages_done / p.pages_total
        else:
            done = p.files_done / p.files_total if p.files_total else 0.0
        c1, c2 = st.columns([5, 1])
        c1.progress(min(1.0, done), text=job_label(job))
        active = job.state in ACTIVE_STATES and not job.cancel_requested
        if active and c2.button("Cancel", key=f"cancel-{job.job_id}"):
            svc.cancel_job(job.job_id)
            st.rerun()
        if job.error is not None:
            c1.error(text(job.error.message), icon=":material/error:")
        for e in job.errors[:5]:
            c1.caption(text(outcome_message(e.path, e.code, e.message)))


def main() -> None:
    st.set_page_config(page_title="PageLens", page_icon=":material/document_search:", layout="wide")
    try:
        base = base_service()
        if "who" not in st.session_state and base.auth_required():
            sign_in(base)
            st.stop()
    except PageLensError as e:
        fail(e)
        st.stop()
    pages = {"Library": library_page, "Search": search_page, "Ask": ask_page, "Extract": extract_page,
             "Jobs": jobs_page}
    st.sidebar.title("PageLens")
    choice = st.sidebar.radio("Go to", list(pages), key="nav", label_visibility="collapsed")
    st.sidebar.caption("Grounded search, answers and extraction over your documents.")
    who = st.session_state.get("who")
    if who is not None:
        sees = ", ".join(who.collections) if who.collections and who.role != "admin" else "every collection"
        st.sidebar.caption(f"Signed in as **{plain(who.name)}** ({who.role}; {plain(sees)})")
        if st.sidebar.button("Sign out"):
            for k in ("who", "acting"):
                st.session_state.pop(k, None)
            st.rerun()
    try:
        pages[choice]()
    except Exception as e:  # errors never show a traceback to the user
        fail(e)


# Streamlit runs this file as ``__main__``, so every process spawned under it (page readers, page renderers)
# imports it again: only the UI's own process draws the UI (a spawned child would re-run it bare, open the data
# dir and log a "missing ScriptRunContext" warning per widget). A spawned child is named before it imports this.
if multiprocessing.current_process().name == "MainProcess":
    main()
