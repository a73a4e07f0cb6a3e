"""The media library: list, get, the video's bytes (with HTTP Range) and its poster.

On local storage the API sends the file itself (Range and conditional requests answered by
send_file); on S3 it redirects to a presigned GET of the object, which answers Range itself.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, request, send_file
from werkzeug.http import parse_range_header

from services.api import context
from services.api.contract import Param, Reply, route
from shared.errors import ErrorBody, InvalidInput, InvalidMediaToken, NotFound
from shared.media import ingest, library, urls
from shared.media.models import MediaAsset
from shared.media.schemas import MediaAsset as MediaAssetView
from shared.media.schemas import MediaPage, MediaQuery

bp = Blueprint("media", __name__, url_prefix="/v1/media")


def _view(asset: MediaAsset) -> MediaAssetView:
    runtime = context.runtime()
    media = urls.asset_urls(
        asset,
        storage=runtime.storage,
        base_url=context.base_url(),
        secret_key=runtime.settings.secret_key,
    )
    return MediaAssetView.of(asset, url=media.content, poster_url=media.poster)


@route(
    bp,
    "GET",
    "",
    summary="The media library, newest first",
    query=MediaQuery,
    replies={200: Reply("A page of assets.", MediaPage)},
    errors=(InvalidInput,),
)
def list_media(query: MediaQuery) -> MediaPage:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        assets, total = library.list_assets(
            session=session,
            account_id=account_id,
            source_type=query.source_type,
            search=query.search,
            limit=query.limit,
            offset=query.offset,
        )
        data = [_view(asset) for asset in assets]
    return MediaPage(data=data, total=total, limit=query.limit, offset=query.offset)


@route(
    bp,
    "GET",
    "/<asset_id>",
    summary="A media asset",
    replies={200: Reply("The asset.", MediaAssetView)},
    errors=(NotFound,),
)
def get_media(asset_id: str) -> MediaAssetView:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        return _view(library.get_asset(session=session, account_id=account_id, asset_id=asset_id))


def _asset_for_download(asset_id: str) -> MediaAsset:
    """The asset, for a bearer key of its account or for a signed URL of this asset."""
    token = request.args.get("token")
    runtime = context.runtime()
    if token and context.bearer_key() is None:
        if not urls.token_grants(token, asset_id, runtime.settings.secret_key):
            raise InvalidMediaToken("This media URL's token is altered or expired.")
        with runtime.db.transaction() as session:
            asset = session.get(MediaAsset, uuid.UUID(asset_id))
        if asset is None:
            raise NotFound(f"No media asset {asset_id!r}.")
        return asset
    account_id = context.authenticated_account()
    with runtime.db.transaction() as session:
        return library.get_asset(session=session, account_id=account_id, asset_id=asset_id)


def _send(key: str, *, content_type: str, filename: str | None) -> Response:
    """The stored object: sent from the local file, or a redirect to its presigned URL."""
    storage = context.runtime().storage
    path = storage.local_path(key)
    if path is not None:
        _ignore_unservable_range()
        # send_file answers Range requests (206) and conditional requests from the file itself.
        response = send_file(
            path,
            mimetype=content_type,
            download_name=filename,
            conditional=True,
            max_age=3600,
        )
        if context.bearer_key() is not None:
            # Fetched with an account's key: no shared cache may keep it for others. (A
            # signed URL is its own credential, so a shared cache keyed by it may.)
            response.cache_control.public = False
            response.cache_control.private = True
        return response
    url = urls.presigned_url(storage, key, filename=filename, content_type=content_type)
    if url is None:
        raise NotFound("This media is not available.")
    # The bucket serves the bytes (and Range); the URL is the same for the hour, so it may be
    # cached as long. A client's Authorization header is not sent on to another origin.
    return Response(status=302, headers={"Location": url, "Cache-Control": "private, max-age=3600"})


def _ignore_unservable_range() -> None:
    """Drop a `Range` that is not one byte range, so the whole file is sent (200): another
    unit must be ignored (RFC 9110, 14.2), and several ranges or an unreadable one may be.
    werkzeug answered all of them 416, as if the range were past the end; a single range
    past the end still is."""
    header = request.environ.get("HTTP_RANGE")
    if header is None:
        return
    parsed = parse_range_header(header)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        del request.environ["HTTP_RANGE"]


def _file_replies(media_type: str) -> dict[int, Reply]:
    """The bytes, a range of them, or why not (406/416 in the one error shape)."""
    content_range = {"Content-Range": {"required": True, "schema": {"type": "string"}}}
    return {
        200: Reply("The bytes.", media_type=media_type),
        206: Reply("The requested range.", media_type=media_type, headers=content_range),
        302: Reply("On object storage: the presigned URL of the object (it serves Range)."),
        304: Reply("Not modified."),
        416: Reply("The range is not satisfiable.", ErrorBody, headers=content_range),
    }


FILE_ACCESS = ("bearer", "signedUrl")
RANGE = Param("header", "Range", {"type": "string"}, "A byte range, e.g. `bytes=0-1023`.")


@route(
    bp,
    "GET",
    "/<asset_id>/content",
    summary="The video",
    replies=_file_replies("video/mp4"),
    errors=(NotFound, InvalidMediaToken),
    params=(RANGE,),
    security=FILE_ACCESS,
)
def media_content(asset_id: str) -> Response:
    asset = _asset_for_download(asset_id)
    return _send(asset.storage_key, content_type=asset.content_type, filename=asset.filename)


@route(
    bp,
    "GET",
    "/<asset_id>/poster",
    summary="The poster frame",
    replies=_file_replies("image/jpeg"),
    errors=(NotFound, InvalidMediaToken),
    params=(RANGE,),
    security=FILE_ACCESS,
)
def media_poster(asset_id: str) -> Response:
    asset = _asset_for_download(asset_id)
    if not asset.poster_key:
        raise NotFound("This asset has no poster image.")
    return _send(asset.poster_key, content_type=ingest.POSTER_CONTENT_TYPE, filename=None)
