"""What a user types: the command line, its commands, the bench and the figures."""
