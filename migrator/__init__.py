"""cp-migrator: moves the legacy user configuration into the ConnectivityProxy CR."""
