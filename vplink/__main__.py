"""``python -m vplink``: the command line, for callers that run it from a given interpreter."""

from vplink.cli import main

main()
