"""One module per ``labctl`` subcommand."""
