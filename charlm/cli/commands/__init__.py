"""One module per `charlm` subcommand: thin click wrappers over library functions."""
