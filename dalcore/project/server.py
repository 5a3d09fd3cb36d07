"""``dalcore serve``: the annotator's web page, a Starlette app served by uvicorn.

The page (``static/``: plain HTML, JS and CSS, no build step, nothing fetched from elsewhere)
talks to a small JSON API. Every label is written in its own transaction the moment it arrives
(the database is the only state: a ``kill -9`` of the server loses no label it acknowledged), and
giving an image the label it already has writes nothing, so two tabs on one batch neither lose
nor duplicate a label. Training and selecting the next batch run in a background thread (the same
:func:`~dalcore.project.query.run_query` as ``dalcore query``, holding the project's query lock)
while the page stays usable; the page polls its progress.

Only the project's images are served: images by id (as PNG thumbnails), and original files only
under a path the database lists, resolved inside the image folder. The server binds 127.0.0.1
unless told otherwise, accepts only Host headers naming a local address or the bound host (against
DNS rebinding), and with a token refuses every request that does not carry it (``?token=``, the
``X-Dalcore-Token`` header, or the cookie the page receives on its first visit).
"""

from __future__ import annotations

import io
import os
import secrets
import threading
import traceback
from functools import lru_cache
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .store import Project, ProjectError

__all__ = ["create_app", "serve"]

STATIC = Path(__file__).with_name("static")
TOKEN_COOKIE = "dalcore_token"
#: Keys of the class shortcuts, in class order.
SHORTCUTS = "1234567890abcdefghijklmnopqrstuvwxyz"
THUMB = 256


class _Job:
    """The background query: one at a time, its progress readable from any request."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {"state": "idle"}
        self.thread: threading.Thread | None = None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.state)

    def _progress(self, stage: str, fraction: float) -> None:
        with self.lock:
            self.state.update(stage=stage, fraction=round(float(fraction), 3))

    def start(self, opts: Any) -> bool:
        with self.lock:
            if self.thread is not None and self.thread.is_alive():
                return False
            self.state = {"state": "running", "stage": "starting", "fraction": 0.0}
            self.thread = threading.Thread(target=self._run, args=(opts,), daemon=True,
                                           name="dalcore-query")
            self.thread.start()
        return True

    def _run(self, opts: Any) -> None:
        from .query import run_query

        try:
            res = run_query(self.root, opts, progress=self._progress)
            done = {"state": "done", "lines": res.lines, "query_id": res.query_id}
        except ProjectError as e:
            done = {"state": "failed", "error": str(e)}
        except Exception as e:  # the page shows it; the server keeps serving
            traceback.print_exc()
            done = {"state": "failed", "error": f"{type(e).__name__}: {e}"}
        with self.lock:
            self.state = done


def _project(request: Request) -> Project:
    return Project.open(request.app.state.root)


def _json_body(body: Any, *keys: str) -> dict:
    if not isinstance(body, dict):
        raise ProjectError("expected a JSON object")
    missing = [k for k in keys if k not in body]
    if missing:
        raise ProjectError(f"missing field {missing[0]!r}")
    return body


def _int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProjectError(f"{name}: expected an integer, got {value!r}")
    return value


async def _body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ProjectError("expected a JSON body") from None


def _error(e: ProjectError, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": str(e)}, status_code=status)


# ------------------------------------------------------------------------------ the state


def _state(request: Request) -> JSONResponse:
    with _project(request) as p:
        classes = p.classes()
        labels = p.current_labels()
        q = p.last_query()
        model = p.last_model()
        if q is not None:
            for it in q["items"]:
                it["label"] = labels.get(it["image_id"])
        doc = {
            "project": p.root.name, "preset": p.preset, "counts": p.counts(),
            "classes": [{"id": i, "name": c, "key": SHORTCUTS[i]} for i, c in enumerate(classes)],
            "query": q,
            "model": None if model is None else {
                k: model.get(k) for k in ("id", "accuracy_cv", "accuracy_cv_std", "cv_folds",
                                          "labels_used", "method", "semi", "pretrain")},
            "job": request.app.state.job.snapshot(),
        }
    return JSONResponse(doc)


def _predictions(request: Request) -> JSONResponse:
    try:
        offset = int(request.query_params.get("offset", "0"))
        limit = min(500, int(request.query_params.get("limit", "100")))
    except ValueError:
        return _error(ProjectError("offset, limit: expected integers"))
    if offset < 0 or limit < 1:
        return _error(ProjectError("offset, limit: expected offset >= 0 and limit >= 1"))
    with _project(request) as p:
        model = p.last_model()
        labels = p.current_labels()
        if model is None:
            return JSONResponse({"total": 0, "items": [], "model": None})
        preds = p.predictions(model["id"])
        rows = sorted(((conf, im.id, im.path, c) for im in p.images()
                       if im.id in preds for c, conf, _pc, _pw in [preds[im.id]]))
        items = [{"image_id": i, "path": path, "predicted": c, "confidence": conf,
                  "label": labels.get(i)} for conf, i, path, c in rows[offset:offset + limit]]
    return JSONResponse({"total": len(rows), "items": items, "model": model["id"]})


# ------------------------------------------------------------------------------ labels


async def _label(request: Request) -> JSONResponse:
    try:
        body = _json_body(await _body(request), "image_id", "class_id")
        image_id = _int(body["image_id"], "image_id")
        class_id = _int(body["class_id"], "class_id", allow_none=True)
        query_id = _int(body.get("query_id"), "query_id", allow_none=True)
        source = "undo" if body.get("undo") else "human"

        def write() -> tuple[bool, dict]:
            with _project(request) as p:
                return p.set_label(image_id, class_id, source=source,
                                   query_id=query_id), p.counts()

        changed, counts = await run_in_threadpool(write)
    except ProjectError as e:
        return _error(e)
    return JSONResponse({"ok": True, "changed": changed, "image_id": image_id,
                         "label": class_id, "counts": counts})


async def _skip(request: Request) -> JSONResponse:
    try:
        body = _json_body(await _body(request), "image_id", "query_id")
        qid, iid = _int(body["query_id"], "query_id"), _int(body["image_id"], "image_id")

        def write() -> None:
            with _project(request) as p:
                p.skip(qid, iid)

        await run_in_threadpool(write)
    except ProjectError as e:
        return _error(e)
    return JSONResponse({"ok": True})


# ------------------------------------------------------------------------------ training


async def _train(request: Request) -> JSONResponse:
    from .query import QueryOptions, validate_options

    try:
        body = await _body(request)
        body = _json_body(body, "budget")
        opts = QueryOptions(budget=_int(body["budget"], "budget"),
                            method=str(body.get("method", "uncertainty")),
                            semi=bool(body.get("semi", False)),
                            pretrain=bool(body.get("pretrain", False)),
                            cv=_int(body.get("cv", 3), "cv"), progress=False)
        validate_options(opts)
    except ProjectError as e:
        return _error(e)
    if not request.app.state.job.start(opts):
        return _error(ProjectError("a query is already running"), 409)
    return JSONResponse({"ok": True, "job": request.app.state.job.snapshot()}, status_code=202)


def _job(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.job.snapshot())


# ------------------------------------------------------------------------------ images


@lru_cache(maxsize=2048)
def _thumbnail(path: str, mtime_ns: int) -> bytes:
    from PIL import Image

    from .scan import _to_rgb_or_l

    with Image.open(path) as im:
        im.load()
        im = _to_rgb_or_l(im)
        im.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    return buf.getvalue()


def _image(request: Request) -> Response:
    try:
        image_id = int(request.path_params["image_id"])
    except ValueError:
        return PlainTextResponse("not found", status_code=404)
    with _project(request) as p:
        rel = p.path_of(image_id)
        root = p.image_dir
    if rel is None:
        return PlainTextResponse("not found", status_code=404)
    path = _inside(root, rel)
    if path is None:
        return PlainTextResponse("forbidden", status_code=403)
    try:
        data = _thumbnail(str(path), path.stat().st_mtime_ns)
    except Exception:  # the file changed or went since the scan
        return PlainTextResponse("image unreadable; rescan the project", status_code=404)
    return Response(data, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


def _inside(root: Path, rel: str) -> Path | None:
    """``root / rel`` when it resolves inside ``root`` (no ``..``, no link out), else None."""
    base = root.resolve()
    try:
        path = (base / rel).resolve()
        path.relative_to(base)
    except (ValueError, OSError):
        return None
    return path


def _file(request: Request) -> Response:
    rel = request.path_params["path"]
    with _project(request) as p:
        known = p.image_id_of(rel) is not None and ".." not in Path(rel).parts
        root = p.image_dir
    path = _inside(root, rel) if known else None
    if path is None or not path.is_file():
        return PlainTextResponse("not an image of this project", status_code=404)
    return FileResponse(path)


def _index(request: Request) -> Response:
    resp = FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})
    token = request.app.state.token
    if token and request.query_params.get("token") == token:
        resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
    return resp


# ------------------------------------------------------------------------------ the app


class _TokenGate:
    """ASGI middleware: with a token, every HTTP request must carry it."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.token and scope["type"] == "http":
            req = Request(scope)
            given = (req.query_params.get("token") or req.headers.get("x-dalcore-token")
                     or req.cookies.get(TOKEN_COOKIE) or "")
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                resp = PlainTextResponse("forbidden: this dalcore server needs its token "
                                         "(open the address `dalcore serve` printed)",
                                         status_code=403)
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(root: str | os.PathLike, *, token: str | None = None,
               host: str = "127.0.0.1") -> Starlette:
    """The ASGI app serving the project in ``root`` (which must exist)."""
    Project.open(root).close()  # a clear error now rather than on the first request
    routes = [
        Route("/", _index),
        Route("/api/state", _state),
        Route("/api/predictions", _predictions),
        Route("/api/label", _label, methods=["POST"]),
        Route("/api/skip", _skip, methods=["POST"]),
        Route("/api/train", _train, methods=["POST"]),
        Route("/api/job", _job),
        Route("/api/image/{image_id}", _image),
        Route("/files/{path:path}", _file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    hosts = sorted({"127.0.0.1", "localhost", "::1", "[::1]", "testserver", host})
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts if host not in
                             ("0.0.0.0", "::") else ["*"]),
                  Middleware(_TokenGate, token=token)]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.root = Path(root)
    app.state.token = token
    app.state.job = _Job(Path(root))
    return app


def serve(root: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8765,
          token: str | None = None, open_browser: bool = False) -> int:
    """Serve the project until Ctrl-C (holding its serve lock); returns an exit code."""
    import socket

    import uvicorn

    from .locks import ProjectLock

    if not 0 < int(port) < 65536:
        raise ProjectError(f"--port: expected 1..65535, got {port}")
    app = create_app(root, token=token, host=host)
    with ProjectLock(root, "serve"):
        try:
            with socket.create_server((host, int(port))):
                pass
        except OSError as e:
            raise ProjectError(f"--host {host} --port {port}: cannot listen there "
                               f"({e.strerror})") from None
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
        print(f"serving {root} at {url}{'?token=' + token if token else ''} (Ctrl-C to stop)",
              flush=True)
        uvicorn.run(app, host=host, port=int(port), log_level="warning")
    return 0
