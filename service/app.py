"""The FastAPI app: one warm `Linker`, the JSON API (`/link`, `/link/all`, `/link/stream`, `/entities`, `/health`)
and the page."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, File, Form, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from vplink.agent.linker import Linker, RESULT
from vplink.agent.state import PictureResult
from vplink.agent.visual_prompt import VisualPrompt, parse_box
from vplink.core.errors import VplinkError
from vplink.core.records import Entity, LinkQuery
from vplink.service.deadline import ClientGone, Deadline, link_within, wait_for
from vplink.service.errors import ApiError, RequestError
from vplink.service.limits import BodySizeLimit
from vplink.service.pictures import PictureRoot, temporary_picture
from vplink.service.schemas import ErrorBody, Health, LinkResponse, PictureList, PictureResponse
from vplink.service.settings import ServiceSettings

STATIC = Path(__file__).parent / "static"
#: How long /health waits for the model server before calling it unreachable.
HEALTH_TIMEOUT_S = 2.0


@dataclass
class LinkForm:
    """The fields of a linking request (multipart form), read once and shared by /link and /link/stream."""

    data: bytes | None
    filename: str | None
    path: str | None
    box: list[float] | None
    text: str | None
    mention: str | None


# The form fields /link and /link/all share.
ImageField = Annotated[UploadFile | None, File(description="the picture, uploaded")]
PathField = Annotated[str | None, Form(description="or: a picture under the server's image root, relative to it")]
TextField = Annotated[str | None, Form(description="caption or text around the picture")]


async def link_form(
    image: ImageField = None,
    path: PathField = None,
    box: Annotated[str | None, Form(description="x0,y0,x1,y1 in pixels of the picture; empty: the whole picture")]
    = None,
    text: TextField = None,
    mention: Annotated[str | None, Form(description="the mention word, if any")] = None,
) -> LinkForm:
    """Read and check the form; a bad box gets the CLI's message."""
    if image is not None and path:
        raise ApiError(RequestError("both `image` and `path` name a picture",
                                    "upload `image` or name `path`, not both"))
    data = await image.read() if image is not None else None
    if data is not None and not data:
        raise ApiError(RequestError(f"the uploaded picture {image.filename!r} is empty", "upload the file again"))
    if data is None and not path and not (text or "").strip():
        raise ApiError(RequestError("nothing to link", "upload `image`, name `path` under the image root, or give "
                                                       "`text`"))
    try:
        parsed = parse_box(box)
    except VplinkError as error:
        raise ApiError(error) from None
    return LinkForm(data=data, filename=image.filename if image is not None else None, path=path or None,
                    box=list(parsed) if parsed else None, text=text or None, mention=mention or None)


async def all_form(
    image: ImageField = None,
    path: PathField = None,
    boxes: Annotated[str | None, Form(description="boxes x0,y0,x1,y1 separated by ';'; empty: every face found")]
    = None,
    text: TextField = None,
) -> tuple[LinkForm, list[list[float]] | None]:
    """Read and check the form of /link/all: a picture, optional boxes (each checked like /link's), a caption."""
    if image is None and not path:
        raise ApiError(RequestError("no picture to find everyone in", "upload `image` or name `path`"))
    form = await link_form(image=image, path=path, text=text)
    try:
        parsed = [list(parse_box(part)) for part in (boxes or "").split(";") if part.strip()]
    except VplinkError as error:
        raise ApiError(error) from None
    return form, parsed or None


class Service:
    """What the routes share: the settings, the warm linker and the image root."""

    def __init__(self, settings: ServiceSettings, linker: Linker) -> None:
        self.settings = settings
        self.linker = linker
        self.pictures = PictureRoot(settings.image_root)
        #: Seconds the warm-up took; None until it is done (then /health answers 200).
        self.warm_up_s: float | None = None

    def open_query(self, form: LinkForm, stack: ExitStack) -> tuple[LinkQuery, str | None, dict[str, str]]:
        """The query for a form, the picture's label as the client knows it, and temp paths to hide in errors."""
        image, label, relabel = None, None, {}
        if form.data is not None:
            label = form.filename or "upload"
            image = stack.enter_context(temporary_picture(form.data, form.filename))
            relabel = {str(image): f"uploaded picture {label!r}"}
        elif form.path:
            try:
                image = self.pictures.resolve(form.path)
            except VplinkError as error:
                raise ApiError(error) from None
            label = form.path
            relabel = {str(image): form.path}
        query = LinkQuery(image=str(image) if image else None, box=form.box, text=form.text, mention=form.mention)
        return query, label, relabel

    def visual_prompt(self, query: LinkQuery) -> VisualPrompt | None:
        """The query's visual prompt, made now (picture loaded, box checked) so that a stream refuses bad input
        with a 4xx, not mid-way; the linker goes on with it instead of loading the picture again."""
        return VisualPrompt.load(query.image, query.box) if query.image else None

    def health(self) -> Health:
        """The store, the encoders, and whether the model server answers now."""
        opened = self.linker.retriever.store
        store: dict[str, Any] = {"location": opened.location, "prefix": opened.prefix}
        try:
            store.update(ok=True, entities=self.linker.retriever.store.count())
        except Exception as error:  # noqa: BLE001 - a health check reports failures, it does not raise them
            store.update(ok=False, error=f"{type(error).__name__}: {error}")
        retriever = self.linker.retriever
        encoders = {"text": retriever.text_encoder.name,
                    "image": getattr(retriever.image_encoder, "name", None)}
        llm = self.linker.llm
        server: dict[str, Any] = {"configured": llm is not None, "url": llm.base_url if llm else None,
                                  "reachable": None, "model": llm.model if llm else None}
        if llm is not None:
            try:
                key = llm.config.api_key
                answer = httpx.get(f"{llm.base_url}/models", timeout=HEALTH_TIMEOUT_S,
                                   headers={"Authorization": f"Bearer {key}"} if key else None)
                server["reachable"] = answer.status_code == 200
            except httpx.HTTPError as error:
                server.update(reachable=False, error=f"{type(error).__name__}: {error}")
        ok = store["ok"] and server["reachable"] is not False
        status = "warming" if self.warm_up_s is None else "ok" if ok else "degraded"
        return Health(status=status, store=store, encoders=encoders, model_server=server,
                      image_root=str(self.pictures.root) if self.pictures.root else None,
                      warm=self.warm_up_s is not None,
                      warm_up_s=None if self.warm_up_s is None else round(self.warm_up_s, 3))


def _sse(event: str, data: Any) -> str:
    """One server-sent event; JSON on one line, so the frame needs a single ``data:`` line."""
    return f"event: {event}\ndata: {json.dumps(jsonable_encoder(data), ensure_ascii=False)}\n\n"


def create_app(settings: ServiceSettings, linker: Linker) -> FastAPI:
    """The app over ``linker``, which stays warm for every request."""
    service = Service(settings, linker)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Every model is loaded and run once before the server takes requests: the first user waits no longer
        # than the tenth (uvicorn opens its port after this).
        service.warm_up_s = await run_in_threadpool(linker.warm_up)
        yield
        if linker.llm is not None:
            linker.llm.close()

    app = FastAPI(title="vplink", summary="Link a box on a picture to an entity of your knowledge base.",
                  version=_version(), lifespan=lifespan,
                  # FastAPI's /docs and /redoc pages load their scripts from a CDN; the service must work
                  # offline, so only the schema is served (/openapi.json) and the page at / is ours.
                  docs_url=None, redoc_url=None,
                  responses={422: {"model": ErrorBody, "description": "bad input; the message says the fix"}})
    app.state.service = service
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body.model_dump(), status_code=error.status)

    @app.exception_handler(VplinkError)
    async def vplink_error(request: Request, error: VplinkError) -> JSONResponse:
        return await api_error(request, ApiError(error))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health", response_model=Health, responses={503: {"model": Health, "description": "still warming up"}})
    async def health() -> Health | JSONResponse:
        """Whether the store opens, which encoders run, whether the model server answers, and whether every model
        is loaded and warm (503 until it is)."""
        found = await run_in_threadpool(service.health)
        return found if found.warm else JSONResponse(found.model_dump(), status_code=503)

    @app.get("/entities/{entity_id}", response_model=Entity, responses={404: {"model": ErrorBody}})
    async def entity(entity_id: str) -> Entity:
        """One KB entity by id."""
        found = await run_in_threadpool(linker.retriever.store.get_entities, [entity_id])
        if entity_id not in found:
            raise RequestError(f"no entity {entity_id!r} in the store at {linker.retriever.store.location}",
                               "use an id from a /link ranking", status=404)
        return found[entity_id]

    @app.get("/pictures", response_model=PictureList)
    async def pictures() -> PictureList:
        """The pictures under the image root that /link may name by ``path``."""
        return PictureList(image_root=service.pictures.root is not None,
                           pictures=await run_in_threadpool(service.pictures.listing))

    @app.get("/pictures/{name:path}", response_class=FileResponse, responses={403: {"model": ErrorBody}})
    async def picture(name: str) -> FileResponse:
        """One picture under the image root (the page shows it to draw a box on)."""
        return FileResponse(service.pictures.resolve(name))

    async def within_deadline(request: Request, form: LinkForm, work: Callable[[LinkQuery, Deadline], Any]) -> Any:
        """``work(query, deadline)`` for the form's picture in a worker thread, within the request's time limit;
        None when the client left. The uploaded picture lives until the work stops, which may be after we answered."""
        stack = ExitStack()
        try:
            query, label, relabel = service.open_query(form, stack)
        except BaseException:
            stack.close()
            raise
        deadline = Deadline(settings.request_timeout_s)

        def run() -> Any:
            with stack:
                return work(query, deadline), label

        try:
            return await wait_for(asyncio.ensure_future(run_in_threadpool(run)), request, deadline)
        except ClientGone:
            return None  # nobody reads the answer; the server's log says why
        except VplinkError as error:
            raise ApiError(error, relabel) from None

    @app.post("/link", response_model=LinkResponse, responses={504: {"model": ErrorBody}})
    async def link(request: Request, form: Annotated[LinkForm, Depends(link_form)]) -> LinkResponse | Response:
        """Link the boxed region of a picture (uploaded, or under the image root) to ranked KB entities."""
        done = await within_deadline(request, form, lambda query, deadline: link_within(linker, query, deadline))
        return Response(status_code=499) if done is None else LinkResponse.of(*done)

    @app.post("/link/all", response_model=PictureResponse, responses={504: {"model": ErrorBody}})
    async def link_all(request: Request, given: Annotated[tuple[LinkForm, list[list[float]] | None],
                                                          Depends(all_form)]) -> PictureResponse | Response:
        """Find everyone in a picture (every face, or every given box) and link them jointly: one entity per
        person, no entity twice, unknown allowed."""
        form, boxes = given

        def work(query: LinkQuery, deadline: Deadline) -> PictureResult:
            return linker.link_all(query.image, query.text, boxes, link=lambda one: link_within(linker, one, deadline))

        done = await within_deadline(request, form, work)
        return Response(status_code=499) if done is None else PictureResponse.of(*done)

    @app.post("/link/stream", response_class=StreamingResponse,
              responses={200: {"content": {"text/event-stream": {}},
                               "description": "events `step` {node, update} per finished step, then `result` "
                                              "(a LinkResponse) or `error` {detail, error}"}})
    async def link_stream(form: Annotated[LinkForm, Depends(link_form)]) -> StreamingResponse:
        """Link like /link, sending each workflow step as a server-sent event while the agent works."""
        stack = ExitStack()
        try:
            query, label, relabel = service.open_query(form, stack)
            try:
                prompt = await run_in_threadpool(service.visual_prompt, query)
            except VplinkError as error:
                raise ApiError(error, relabel) from None
        except BaseException:
            stack.close()
            raise

        deadline = Deadline(settings.request_timeout_s)

        def events() -> Iterator[str]:
            # A client that leaves stops this generator at its next step: Starlette stops iterating it.
            with stack:
                try:
                    for node, update in linker.stream_query(query, prompt):
                        if node == RESULT:
                            yield _sse("result", LinkResponse.of(update, label))
                        else:
                            yield _sse("step", {"node": node, "update": update})
                            deadline.check(node)
                except VplinkError as error:
                    failure = ApiError(error, relabel)
                    yield _sse("error", {**failure.body.model_dump(), "status": failure.status})

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def _version() -> str:
    from importlib.metadata import version

    return version("vplink")
