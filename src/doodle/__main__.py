import sys

from doodle.cli import main

sys.exit(main())
