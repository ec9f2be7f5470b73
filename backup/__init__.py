"""cp-backup and cp-restore: a verified copy of the user configuration, and the way back."""
