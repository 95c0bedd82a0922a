"""Command-line interface: a stable contract that scripts parse; every subcommand calls the Qt-free core."""
