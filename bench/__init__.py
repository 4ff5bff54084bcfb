"""Benchmarks (not run in CI). Each module exposes `async def run(scale: float = 1.0) -> dict`
returning its raw figures, the baseline measured in the same run, ratios, and a `checks` list
of {"name", "value", "goal", "unit", "pass"}. `make bench` runs them all; `onedoor bench NAME
--json` runs one. All traffic stays on loopback."""
