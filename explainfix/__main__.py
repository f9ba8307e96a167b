import sys

from explainfix.cli import main

sys.exit(main())
