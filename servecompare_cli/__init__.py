"""`servecompare`: one command for the project's entry points (bench, up, export, ...).

Each subcommand hands its arguments to the same `main(argv)` that `python -m <module>` runs (commands.py holds the
table); nothing here parses or re-implements an option.
"""
