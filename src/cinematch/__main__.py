"""`python -m cinematch` runs the command line."""

from cinematch.cli import main

main()
