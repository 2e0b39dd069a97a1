"""Subcommands of the ``labctl`` CLI, one module each."""
