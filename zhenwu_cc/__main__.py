import sys

from zhenwu_cc.cli import main

sys.exit(main())
