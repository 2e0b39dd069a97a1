"""What a user types: the command line, its commands, bench and plots."""
