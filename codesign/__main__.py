"""`python -m codesign` runs the CLI."""
from codesign.cli import main

main()
