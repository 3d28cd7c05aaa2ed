"""The subcommands of `sessionguard`, one module each (see `sessionguard.cli`)."""
