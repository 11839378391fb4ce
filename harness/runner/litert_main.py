"""Entry point of the LiteRT 2.x dialect: `python -m harness.runner.litert_main --graph=...`.

The LiteRT zipapp (build.build_runner(..., dialect="litert")) runs this file as its __main__.
"""

import sys

from harness.runner.litert_tool import main

sys.exit(main())
