"""Images: the list (a page at a time) with visibility, upload, change of visibility.

An upload is two steps, as for any Glance client: create the record, then PUT its bytes. With
JavaScript (`static/images.js`) the browser posts the form's fields here, gets the new image's
id, and sends the file itself as the body of `PUT /images/{id}/file`, showing the upload's
progress; that body is streamed on to the Image API as it arrives (aiohttp's
`request.content`), never held whole. Without JavaScript the form is one multipart post, read
part by part: the CSRF check takes the first part (the token), and the file part is streamed on
the same way (`_create_streamed`), so no body size limit applies to it either.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import IO, Any

import aiohttp
import orjson
from aiohttp import web

from fabric.dashboard import csrf
from fabric.dashboard.api import ApiError, error_message
from fabric.dashboard.page import HTTP, PREFIX, cloud_of, error_page, form_str, redirect, render, signed_in
from fabric.dashboard.pages.refusals import FormState, page_params, refused

PAGE_SIZE = 20
CHUNK_BYTES = 256 * 1024
PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
VISIBILITIES = ("private", "shared", "community", "public")
DISK_FORMATS = ("raw", "qcow2", "iso")
FIELDS = {"name": "name", "visibility": "visibility", "disk_format": "disk_format", "body": "file"}
#: The upload as a whole waits this long at most (a page's calls wait API_TIMEOUT_S).
UPLOAD_TIMEOUT_S = 3600.0


def add_routes(app: web.Application) -> None:
    app.router.add_get("/images", image_list, name="images")
    app.router.add_post("/images", create_image, name="image-create")
    app.router.add_put("/images/{image_id}/file", upload_file, name="image-upload")
    app.router.add_post("/images/{image_id}/visibility", set_visibility, name="image-visibility")


async def _page(request: web.Request, form: FormState, *, status: int = 200) -> web.Response:
    session = signed_in(request)
    assert session.token is not None
    page = await cloud_of(request).get("image", "/v2/images", **page_params(request.query, PAGE_SIZE))
    images = page["images"]
    context = {
        "images": images,
        "project_id": session.token.project.id,
        "visibilities": VISIBILITIES,
        "disk_formats": DISK_FORMATS,
        "next_marker": images[-1]["id"] if "next" in page and images else None,
        "marker": request.query.get("marker", ""),
        "form": form,
    }
    return render(request, "images.html", context, status=status)


async def image_list(request: web.Request) -> web.Response:
    return await _page(request, FormState({"visibility": "private", "disk_format": "raw"}))


async def _send(
    request: web.Request, method: str, path: str, data: Any, content_type: str, timeout_s: float
) -> Any:
    """One call to the Image API with a body that is not JSON (a file, a JSON patch)."""
    cloud = cloud_of(request)
    headers = {"X-Auth-Token": cloud.token.id, "Content-Type": content_type}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    url = cloud.endpoint("image") + path
    async with request.app[HTTP].request(method, url, data=data, headers=headers, timeout=timeout) as resp:
        raw = await resp.read()
        body = orjson.loads(raw) if raw and resp.content_type == "application/json" else raw
        if resp.status >= 400:
            raise ApiError(resp.status, error_message(body), resp.headers.get("x-openstack-request-id"))
        return body


async def _spooled(file: IO[bytes]) -> AsyncIterator[bytes]:
    """A spooled upload's bytes a chunk at a time, read off the event loop (it may be on disk)."""
    while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
        yield chunk


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _json(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def _create_streamed(request: web.Request, reader: aiohttp.MultipartReader) -> web.Response:
    """The form without JavaScript, one multipart post: its fields (the CSRF token, already
    checked, came first), then the file, streamed on to the Image API part by part as it
    arrives, so no body limit applies and nothing is held whole."""
    session = signed_in(request)
    values = {"name": "", "visibility": "", "disk_format": ""}
    file: aiohttp.BodyPartReader | None = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, aiohttp.BodyPartReader):
            continue
        if part.name == "file":
            file = part if part.filename else None
            break  # the last field of the form: what follows it is the file's bytes
        if part.name in values:
            values[part.name] = (await part.read(decode=True))[:255].decode(errors="replace").strip()
    body = {
        "name": values["name"],
        "visibility": values["visibility"] or "private",
        "disk_format": values["disk_format"] or "raw",
        "container_format": "bare",
    }
    try:
        made = await cloud_of(request).call("POST", "image", "/v2/images", body)
        image_id = str(made["id"])
        if file is not None:
            await _send(
                request, "PUT", f"/v2/images/{image_id}/file", _part_chunks(file),
                "application/octet-stream", UPLOAD_TIMEOUT_S,
            )  # fmt: skip
    except ApiError as exc:
        if exc.status == 401:
            raise
        return await _page(request, refused(exc, FIELDS, values), status=exc.status)
    session.flash(
        f"Made image {values['name'] or image_id}" + (" with its data." if file else " (no data yet).")
    )
    return redirect("/images")


async def _part_chunks(part: aiohttp.BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK_BYTES):
        yield chunk


async def create_image(request: web.Request) -> web.Response:
    session = signed_in(request)
    reader = request.get(csrf.MULTIPART)
    if reader is not None:
        return await _create_streamed(request, reader)
    form = await request.post()
    values = {name: form_str(form, name, 255) for name in ("name", "visibility", "disk_format")}
    body = {
        "name": values["name"],
        "visibility": values["visibility"] or "private",
        "disk_format": values["disk_format"] or "raw",
        "container_format": "bare",
    }
    file = form.get("file")
    has_data = isinstance(file, web.FileField) and bool(file.filename)
    try:
        made = await cloud_of(request).call("POST", "image", "/v2/images", body)
        image_id = str(made["id"])
        if has_data:
            assert isinstance(file, web.FileField)
            await _send(
                request, "PUT", f"/v2/images/{image_id}/file", _spooled(file.file),
                "application/octet-stream", UPLOAD_TIMEOUT_S,
            )  # fmt: skip
    except ApiError as exc:
        if _wants_json(request) and exc.status != 401:
            # The script shows these beside the fields; a 5xx keeps its request id.
            state = refused(exc, FIELDS, values) if exc.is_client_error else FormState(values)
            message = state.message or (
                None if exc.is_client_error else f"{exc.message} (request {exc.request_id})"
            )
            return _json({"errors": state.errors, "message": message}, exc.status)
        return await _page(request, refused(exc, FIELDS, values), status=exc.status)
    if _wants_json(request):
        return _json({"id": image_id, "upload": f"{PREFIX}/images/{image_id}/file"}, 201)
    session.flash(
        f"Made image {values['name'] or image_id}" + (" with its data." if has_data else " (no data yet).")
    )
    return redirect("/images")


async def upload_file(request: web.Request) -> web.Response:
    """The file, streamed from the browser's request body to the Image API's."""
    session = signed_in(request)
    image_id = request.match_info["image_id"]
    try:
        await _send(
            request, "PUT", f"/v2/images/{image_id}/file", request.content.iter_chunked(CHUNK_BYTES),
            "application/octet-stream", UPLOAD_TIMEOUT_S,
        )  # fmt: skip
    except ApiError as exc:
        if exc.status == 401:
            raise
        where = "" if exc.is_client_error else f" (request {exc.request_id})"
        return _json({"errors": {}, "message": f"The upload was refused: {exc.message}{where}"}, exc.status)
    session.flash("Uploaded the image's data.")
    return _json({"id": image_id, "next": f"{PREFIX}/images"}, 200)


async def set_visibility(request: web.Request) -> web.Response:
    session = signed_in(request)
    form = await request.post()
    visibility = form_str(form, "visibility", 20)
    name = form_str(form, "name", 255) or request.match_info["image_id"]
    patch = orjson.dumps([{"op": "replace", "path": "/visibility", "value": visibility}])
    try:
        await _send(request, "PATCH", f"/v2/images/{request.match_info['image_id']}", patch, PATCH_TYPE, 30.0)
    except ApiError as exc:
        if exc.status == 401:
            raise
        if not exc.is_client_error:
            return error_page(request, exc)
        session.flash(f"Cannot make {name} {visibility}: {exc.message}", "error")
        return redirect("/images")
    session.flash(f"{name} is now {visibility}.")
    return redirect("/images")
