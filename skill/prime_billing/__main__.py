"""`python -m prime_billing` is the `prime-billing` command."""

import sys

from .cli import main

sys.exit(main())
