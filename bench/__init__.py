"""Benchmarks (figures are not asserted in CI; `make test` runs each at a tiny scale to keep
them working). Each module exposes `async def run(scale: float = 1.0) -> dict` returning its raw
figures, the baseline measured in the same run, ratios, and a `checks` list of {"name", "value",
"goal", "unit", "pass"}; `CHECKS` names every check it reports and `TIMEOUT` bounds it
(`bench.common.run_benchmark`). `make bench` runs them all; `onedoor bench NAME --json` runs one.
All traffic stays on loopback."""
