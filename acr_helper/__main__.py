import sys

from acr_helper.cli import main

sys.exit(main())
