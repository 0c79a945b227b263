"""Run the `catalog` command from a checkout: `python cli.py sync`.

The Typer app lives in `catalog/cli.py` so that `pip install .` ships it with the package;
this file is the project's top-level entry point for people working from source.
"""

from catalog.cli import main

if __name__ == "__main__":
    main()
