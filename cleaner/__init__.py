"""cp-cleaner and cp-status: hand ServiceMappings to the new operator, remove the legacy installation."""
