"""Charts (reports, runs, backtests) drawn with matplotlib in a worker process.

What the service uses: the plain chart data (`data`) and `render.render_charts`,
neither of which loads matplotlib. The drawing modules (`style`, `report_charts`,
`backtest_chart`) are imported only by the worker process (`worker`). This file
imports nothing, so the worker's start-up pays only for what it draws with.
"""
