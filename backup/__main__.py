from backup.cli import backup_main

backup_main()
