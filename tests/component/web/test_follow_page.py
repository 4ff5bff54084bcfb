"""The follow page (kiosk QR code) for a case that is not there."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from server.http import keys
from server.kernel.db import utcnow
from web.follow_links import follow_token


async def test_a_well_signed_link_to_a_missing_case_is_not_found(
    app_client: TestClient[Any, Any],
) -> None:
    token = follow_token(app_client.app[keys.settings].secret_bytes(), 999_999, now=utcnow())
    resp = await app_client.get(f"/follow/{token}")
    assert resp.status == 404
