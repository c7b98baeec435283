"""One module per CLI subcommand; each exposes main(args) -> exit code."""
