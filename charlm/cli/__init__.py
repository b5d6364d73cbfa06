"""The command line: click commands and rich output. No package outside this one imports click or rich."""
