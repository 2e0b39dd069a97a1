import sys

from labctl.app.cli import main

sys.exit(main())
