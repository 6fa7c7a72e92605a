"""`python -m codesign` runs the CLI."""
from codesign.cli.main import main

main()
