import sys

from voicecall.cli import main

sys.exit(main())
