"""A real single node beside its own control plane (node), the host it changes (host), its
components (components); `python -m hack.devenv.node` for make node / node-down."""
