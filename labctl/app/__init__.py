"""What a user types: the command line, its commands, the benchmarks and the plots."""
