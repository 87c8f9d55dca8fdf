"""`python -m clnet`: the `clnet` command."""

from .app.cli import main

raise SystemExit(main())
