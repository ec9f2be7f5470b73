"""cp-cleaner and cp-status: hand ServiceMappings over, remove the legacy installation."""
