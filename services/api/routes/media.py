"""The media library: list, get, the video's bytes (with HTTP Range) and its poster."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, jsonify, request, send_file
from itsdangerous import BadSignature

from services.api import context
from services.api.params import int_arg, str_arg
from services.api.serializers import asset_to_dict, media_signer
from shared.errors import NotFound
from shared.media import library
from shared.models import MediaAsset

bp = Blueprint("media", __name__, url_prefix="/v1/media")

SIGNED_URL_MAX_AGE = 7 * 24 * 3600


def _render(asset: MediaAsset) -> dict[str, object]:
    return asset_to_dict(asset, context.base_url(), context.runtime().settings.secret_key)


@bp.get("")
def list_media() -> Response:
    account_id = context.authenticated_account()
    limit = int_arg("limit", 20, minimum=1, maximum=100)
    offset = int_arg("offset", 0, minimum=0, maximum=1_000_000)
    with context.runtime().db.transaction() as session:
        assets, total = library.list_assets(
            session=session,
            account_id=account_id,
            source_type=str_arg("source_type"),
            search=str_arg("search"),
            limit=limit,
            offset=offset,
        )
        data = [_render(asset) for asset in assets]
    return jsonify({"data": data, "total": total, "limit": limit, "offset": offset})


@bp.get("/<asset_id>")
def get_media(asset_id: str) -> Response:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        return jsonify(
            _render(library.get_asset(session=session, account_id=account_id, asset_id=asset_id))
        )


def _asset_for_download(asset_id: str) -> MediaAsset:
    """The asset, for a bearer key of its account or for a signed URL of this asset."""
    token = request.args.get("token")
    runtime = context.runtime()
    if token and context.bearer_key() is None:
        try:
            signed_id = media_signer(runtime.settings.secret_key).loads(
                token, max_age=SIGNED_URL_MAX_AGE
            )
        except BadSignature:
            raise NotFound(f"No media asset {asset_id!r}.") from None
        if signed_id != asset_id:
            raise NotFound(f"No media asset {asset_id!r}.")
        with runtime.db.transaction() as session:
            asset = session.get(MediaAsset, uuid.UUID(asset_id))
        if asset is None:
            raise NotFound(f"No media asset {asset_id!r}.")
        return asset
    account_id = context.authenticated_account()
    with runtime.db.transaction() as session:
        return library.get_asset(session=session, account_id=account_id, asset_id=asset_id)


@bp.get("/<asset_id>/content")
def media_content(asset_id: str) -> Response:
    asset = _asset_for_download(asset_id)
    path = context.runtime().storage.path(asset.storage_key)
    # send_file answers Range requests (206) and conditional requests from the file itself.
    return send_file(
        path,
        mimetype=asset.content_type,
        download_name=asset.filename,
        conditional=True,
        max_age=3600,
    )


@bp.get("/<asset_id>/poster")
def media_poster(asset_id: str) -> Response:
    asset = _asset_for_download(asset_id)
    if not asset.poster_key:
        raise NotFound("This asset has no poster image.")
    path = context.runtime().storage.path(asset.poster_key)
    return send_file(path, mimetype="image/jpeg", conditional=True, max_age=3600)
