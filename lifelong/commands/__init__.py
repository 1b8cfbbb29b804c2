"""The command line's command groups, one module a group; `cli.py` registers them on its app.

options.py holds what they share (settings, printing, progress, options taken by several
commands); library.py, learning.py, datasets.py, metrics_report.py and benchmarks.py each hold
one group. Heavy modules (torch, the agents) are imported inside the commands that need them.
"""
