"""`make bench`: each step as a whole process against a real local control plane.

    .venv/bin/python -m hack.bench [--runs 5] [--sizes 0,100,1000,5000] [--images auto|no]

- harness.py: the control plane, the cluster states, and each measurement (process, image);
- node.py: deploy/ on a real node, from `kubectl apply` to the operator Running;
- targets.py: the targets of issues 5 and 12, the reasoned minimal requests, and the checks;
- results.py: what a run measured (pickled for `--rerender`);
- report.py with report.md and node.md: the Markdown of docs/benchmarks.md, and its plot;
- notes.md: the profiling notes the report ends with.

A benchmark, never a test: nothing here is timed by `make test`.
"""
