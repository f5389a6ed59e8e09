"""``python -m custseq.cli``."""

from custseq.cli import main

main()
