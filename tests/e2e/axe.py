"""Accessibility and layout checks for browser tests: axe-core (the npm package, injected into
the page) with no serious or critical violation, colour contrast included, and no page wider
than the viewport. The page's context needs `bypass_csp=True` (the app's CSP forbids the
injected script).

    await check_page(page, "case-page")        # axe + no horizontal overflow
    await shoot(page, "01-home")                # screenshots at 1280 and 390 px, each checked
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.async_api import Error as PlaywrightError

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "artifacts" / "e2e"
WIDTHS = (1280, 390)
BLOCKING = ("serious", "critical")


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """The serious and critical axe-core violations on the page as it is now."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE_JS))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in BLOCKING]


def describe(violations: list[dict[str, Any]]) -> str:
    return json.dumps(
        [
            {
                "id": v["id"],
                "impact": v["impact"],
                "help": v["help"],
                "nodes": [n["target"] for n in v["nodes"][:5]],
                "summary": [n.get("failureSummary", "")[:200] for n in v["nodes"][:2]],
            }
            for v in violations
        ],
        ensure_ascii=False,
        indent=1,
    )


async def check_page(page: Any, name: str) -> None:
    """Fail on any serious/critical axe violation or a page wider than its viewport."""
    violations = await axe_violations(page)
    assert not violations, f"{name} ({page.url}): {describe(violations)}"
    widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{name} overflows: {widths[0]} px wide at {widths[1]} px"


async def shoot(page: Any, name: str, *, height: int = 900) -> None:
    """Screenshot the whole page at each width into artifacts/e2e/ and check each."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": height})
        await _screenshot(page, ARTIFACTS / f"{name}-{width}.png")
        await check_page(page, f"{name} at {width} px")
    await page.set_viewport_size({"width": WIDTHS[0], "height": height})


async def _screenshot(page: Any, path: Path) -> None:
    """A full-page screenshot. Chromium under load sometimes answers "Unable to capture
    screenshot" right after a navigation or resize (a protocol error, not a page fault; CI,
    2026-12-04): that one error is retried once, after the page has settled."""
    try:
        await page.screenshot(path=str(path), full_page=True)
    except PlaywrightError as error:
        if "Unable to capture screenshot" not in str(error):
            raise
        await page.wait_for_load_state("load")
        await page.screenshot(path=str(path), full_page=True)
