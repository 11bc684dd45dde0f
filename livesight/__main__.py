import sys

from livesight.cli import main

sys.exit(main())
