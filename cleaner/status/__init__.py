"""cp-status: where a cluster stands in the migration. Read-only: it only GETs and LISTs.

`gather` reads the cluster into a `model.Status` (typed, frozen); `render` turns one into a
table for a person or JSON for scripts, without a cluster. status_cli.py wires them.
"""
