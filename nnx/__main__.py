"""``python -m nnx``: the same as the ``nnx`` command."""

import sys

from .cli import main

sys.exit(main())
