"""What two or more tools share: cluster access (cluster/, no Kyma words), the Kyma names
(kyma), the CR, backup and legacy-installation rules (cr, backups, legacy), a run and its
outcome (runner; cli is its click glue), and errors, logs, redaction, re-planning and diffs."""
