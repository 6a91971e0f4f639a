"""``python -m lockstep.cli``: the ``lockstep`` command."""

from lockstep.cli import main

main()
