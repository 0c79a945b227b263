"""`python -m catalog` runs the CLI."""

from catalog.cli import main

main()
