"""`python -m kto_pipeline.train --spec spec.json` (also under `accelerate launch`): see `spec`."""

import sys

from kto_pipeline.train.spec import main

if __name__ == "__main__":
    sys.exit(main())
