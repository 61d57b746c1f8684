"""``python -m jaxprop``: the same as the ``jaxprop`` command."""

import sys

from jaxprop.cli import main

sys.exit(main())
