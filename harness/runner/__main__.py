import sys

from harness.runner.benchmark import main

sys.exit(main())
