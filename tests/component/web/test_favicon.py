"""Every page names the onedoor icon (an SVG in web/static), and the server serves it."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient


async def test_pages_link_a_served_svg_favicon(app_client: TestClient[Any, Any]) -> None:
    for path in ("/login", "/kiosk"):
        html = await (await app_client.get(path)).text()
        m = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)">', html)
        assert m, path
        icon = await app_client.get(m.group(1))
        assert icon.status == 200 and icon.content_type == "image/svg+xml"
        assert (await icon.text()).startswith("<svg")
