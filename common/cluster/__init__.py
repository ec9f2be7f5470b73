"""Cluster access, and nothing about Kyma: where the cluster is and who we are (kubeconfig),
the JSON client with its retry-safety policy (client), and the transport on the `kubernetes`
package (transport). Imports nothing from common but common.errors (make lint checks it)."""
