"""The dev environment: a local control plane (controlplane), a real node beside it (node),
the admin client the tools are run with (cluster), a standard legacy installation from
manifests/ (legacy), the step images (images) and the operator's Pods (pods). Used by the
Makefile, the tests' fixtures, the demos and the benchmarks; imports nothing from tests/."""
