"""Cluster access that knows nothing of the product it serves: where the cluster is and who
we are (kubeconfig), the JSON client with its retry-safety policy (client), and the transport
on the `kubernetes` package (transport). It imports nothing from common but common.errors
(`make lint` checks that, hack/layers.py)."""
