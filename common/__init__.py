"""Shared plumbing of the cp-migration tools: cluster access, parsing, CR access, errors, logs."""
