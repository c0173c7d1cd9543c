"""The review gallery: every duplicate beside its original, with Restore and Confirm (``python -m producer review``).

=========================  ==================================================================================
``GET /``                  a page of 50 duplicate groups; ``bucket``, ``prefix``, ``kind``, ``min_score``,
                           ``max_score``, ``order`` (``score`` lowest first, ``-score``, ``newest``), ``page``
``GET /thumb``             ``?id=bucket/key&where=bucket|quarantine``: a JPEG thumbnail
                           (:mod:`producer.thumbnails`)
``POST /restore``          form ``token``, ``id``, ``next``: put a duplicate back
                           (:meth:`worker.undo.Reviewer.restore`)
``POST /confirm``          form ``token``, ``id``, ``next``: mark it reviewed
``GET /healthz``           200 while the process serves
=========================  ==================================================================================

Safe by default:

* binds to ``127.0.0.1`` (``DEDUP_REVIEW_HOST``); every request needs the token (``DEDUP_REVIEW_TOKEN``, else
  ``DEDUP_WEBHOOK_TOKEN``): ``Authorization: Bearer …``, or for pages and thumbnails a cookie that
  ``GET /?token=…`` sets (``HttpOnly``, ``SameSite=Strict``) before redirecting to the same page without it;
* a POST must carry the token itself (form field or header): the cookie alone is refused, so another site cannot
  make a reviewer's browser restore anything (CSRF);
* keys are user-controlled and every one is escaped (Jinja2 autoescape); the page carries no script at all and a
  Content-Security-Policy without ``script-src`` says so to the browser;
* nothing of an object reaches the page but a re-encoded thumbnail, and only of objects in ``DEDUP_BUCKETS`` or
  this service's own quarantined copies.

``--export DIR`` writes the same pages as static HTML (``index.html``, ``page-2.html``, …) with their thumbnails
in ``DIR/thumbs/``, and shows the ``restore`` command for each duplicate instead of buttons.

    >>> app = create_review_app(settings, index=index, reviewer=reviewer, thumbnails=thumbnails)
    >>> uvicorn.run(app, host="127.0.0.1", port=8090)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import shlex
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from producer.gallery_pages import ORDERS, BadFilterError, Filters, Page, paginate, with_reviews
from producer.gallery_snapshot import LinkSnapshot
from producer.thumbnails import NotServedError, Thumbnails
from worker.config import Settings
from worker.decision import Kind
from worker.errors import PermanentError, TransientError
from worker.index import Index
from worker.object_ids import BadIdError
from worker.undo import NotReviewableError, Reviewer
from worker.verdicts import PROMOTED, Reviews

log = logging.getLogger(__name__)

COOKIE = "dedup_review"
CSP = (
    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_templates = Environment(
    loader=PackageLoader("producer", "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def load_page(index: Index, filters: Filters, links: LinkSnapshot | None = None) -> Page:
    """One page of groups, from the links collection (or a recent ``links`` snapshot of it), with the verdicts of
    the duplicates on it."""
    page = paginate(links.rows() if links else index.links(), filters)
    verdicts = Reviews(index).verdicts([*page.ids, *(g.original for g in page.groups)])
    promoted = {key: found[PROMOTED].original for key, found in verdicts.items() if PROMOTED in found}
    return with_reviews(page, {key: list(found) for key, found in verdicts.items()}, promoted)


def render(
    page: Page,
    *,
    thumb: Callable[[str, str], str],
    page_url: Callable[[int], str],
    static: bool,
    token: str = "",
    root: str = "/",
    message: str = "",
    error: bool = False,
) -> str:
    """The gallery page as HTML (every value autoescaped)."""
    return _templates.get_template("review.html").render(
        page=page,
        thumb=thumb,
        page_url=page_url,
        static=static,
        token=token,
        root=root,
        message=message,
        error=error,
        kinds=[k.value for k in Kind],
        orders=ORDERS,
        when=_when,
        quote=shlex.quote,
    )


def create_review_app(settings: Settings, *, index: Index, reviewer: Reviewer, thumbnails: Thumbnails) -> Starlette:
    """The gallery as a Starlette app. ``settings.effective_review_token`` must be set (the CLI refuses to
    start without one)."""
    token = settings.effective_review_token
    if not token:
        raise ValueError("the review gallery needs a token (DEDUP_REVIEW_TOKEN or DEDUP_WEBHOOK_TOKEN)")

    links = LinkSnapshot(index, max_age_s=settings.review_snapshot_s)

    def valid(given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), token.encode())

    def may_read(request: Request) -> bool:
        return valid(bearer(request)) or valid(request.cookies.get(COOKIE, ""))

    async def gallery(request: Request) -> Response:
        given = request.query_params.get("token", "")
        if given:  # trade the token in the address for a cookie, and drop it from the address (and history)
            if not valid(given):
                return denied()
            rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            response = RedirectResponse(f"/?{rest}" if rest else "/", status_code=303, headers=HEADERS)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
            return response
        if not may_read(request):
            return denied()
        try:
            filters = Filters.parse(dict(request.query_params))
        except BadFilterError as exc:
            return PlainTextResponse(f"400: {exc}\n", status_code=400, headers=HEADERS)
        try:
            page = await run_in_threadpool(load_page, index, filters, links)
        except TransientError as exc:
            return PlainTextResponse(f"503: the index is unavailable ({exc.reason}); retry\n", 503, headers=HEADERS)
        message, error = _message(request.query_params.get("done", ""), request.query_params.get("object", ""))
        html = render(
            page,
            thumb=lambda object_id, where: "/thumb?" + urlencode({"id": object_id, "where": where}),
            page_url=lambda number: "/?" + filters.query(page=number),
            static=False,
            token=token,
            message=message,
            error=error,
        )
        return HTMLResponse(html, headers=HEADERS)

    async def thumb(request: Request) -> Response:
        if not may_read(request):
            return denied()
        object_id, where = request.query_params.get("id", ""), request.query_params.get("where", "bucket")
        try:
            data = await run_in_threadpool(thumbnails.get, object_id, where=where)
        except BadIdError as exc:
            return PlainTextResponse(f"400: {exc}\n", status_code=400, headers=HEADERS)
        except NotServedError as exc:
            return PlainTextResponse(f"404: {exc}\n", status_code=404, headers=HEADERS)
        except PermanentError as exc:
            return PlainTextResponse(f"415: {exc.reason}\n", status_code=415, headers=HEADERS)
        except TransientError as exc:
            return PlainTextResponse(f"503: {exc.reason}\n", status_code=503, headers=HEADERS)
        return Response(data, media_type="image/jpeg", headers={**HEADERS, "Cache-Control": "private, max-age=300"})

    def mutation(verdict: str, act: Callable[[str], Any]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            form = await request.form()
            given = str(form.get("token", "")) or bearer(request)
            if not valid(given):  # never the cookie alone: that is what a cross-site form would carry
                return PlainTextResponse("403: this action needs the token in the form or header\n", 403)
            object_id, back = str(form.get("id", "")), str(form.get("next", ""))
            try:
                done = await run_in_threadpool(act, object_id)
            except BadIdError as exc:
                return _answer(request, back, "refused", object_id, 400, str(exc))
            except NotReviewableError as exc:
                return _answer(request, back, "refused", object_id, 409, str(exc))
            except TransientError as exc:
                log.warning("%s of %s failed, retry: %s", verdict, object_id, exc)
                return _answer(request, back, "failed", object_id, 503, str(exc))
            finally:
                links.drop()  # the page this answer leads back to shows what changed
            return _answer(request, back, verdict, object_id, 200, done.what)

        return handle

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/", gallery, methods=["GET"]),
            Route("/thumb", thumb, methods=["GET"]),
            Route("/restore", mutation("restored", reviewer.restore), methods=["POST"]),
            Route("/confirm", mutation("confirmed", reviewer.confirm), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def bearer(request: Request) -> str:
    """The token of an ``Authorization: Bearer`` header, or ""."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def denied() -> Response:
    return PlainTextResponse(
        "401: open this page with ?token=<DEDUP_REVIEW_TOKEN> once, or send Authorization: Bearer <token>\n",
        status_code=401,
        headers=HEADERS,
    )


def export(directory: Path, index: Index, thumbnails: Thumbnails, filters: Filters) -> list[Path]:
    """Write every page matching ``filters`` as static HTML with its thumbnails; returns the pages written.
    A thumbnail that cannot be made is left out (the page shows its alt text)."""
    (directory / "thumbs").mkdir(parents=True, exist_ok=True)
    links = LinkSnapshot(index, max_age_s=math.inf)  # every page from one read
    first = load_page(index, filters, links)
    written: list[Path] = []

    def thumb(object_id: str, where: str) -> str:
        name = hashlib.sha256(f"{where}:{object_id}".encode()).hexdigest()[:32] + ".jpg"
        path = directory / "thumbs" / name
        if not path.exists():
            try:
                path.write_bytes(thumbnails.get(object_id, where=where))
            except (NotServedError, PermanentError, TransientError) as exc:
                log.warning("no thumbnail for %s (%s): %s", object_id, where, exc)
        return f"thumbs/{name}"

    for number in range(1, first.pages + 1):
        page = first if number == 1 else load_page(index, replace(filters, page=number), links)
        path = directory / _page_file(number)
        path.write_text(render(page, thumb=thumb, page_url=_page_file, static=True), encoding="utf-8")
        written.append(path)
    return written


def _page_file(number: int) -> str:
    return "index.html" if number == 1 else f"page-{number}.html"


def _message(done: str, object_id: str) -> tuple[str, bool]:
    if done in {"restored", "confirmed"} and object_id:
        return f"{object_id}: {done}.", False
    return "", False


def _answer(request: Request, back: str, done: str, object_id: str, code: int, detail: str) -> Response:
    """JSON for scripts (``Accept: application/json``); for a browser, back to the page it came from (success) or
    a plain page saying what went wrong."""
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"result": done, "id": object_id, "detail": detail}, status_code=code)
    if code != 200:
        return PlainTextResponse(f"{code}: {detail}\n", status_code=code, headers=HEADERS)
    query = urlencode({"done": done, "object": object_id})
    back = back if _safe_query(back) else ""
    return RedirectResponse(f"/?{back}&{query}" if back else f"/?{query}", status_code=303, headers=HEADERS)


def _safe_query(query: str) -> bool:
    """A ``next`` value is only ever a query string of this page (never a URL elsewhere)."""
    return not any(c in query for c in "/\\:\r\n") and len(query) < 2000


def _when(event_time_ms: int) -> str:
    return datetime.fromtimestamp(event_time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
