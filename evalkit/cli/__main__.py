"""`python -m evalkit.cli ...` (e.g. under torchrun) is the `evalkit` command."""

from evalkit.cli import main

main()
