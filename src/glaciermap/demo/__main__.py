"""``python -m glaciermap.demo``: generate the synthetic demo region."""

from . import main

raise SystemExit(main())
