"""``python -m synthlung``: the same as the ``synthlung`` command."""
import sys

from .cli import main

sys.exit(main())
