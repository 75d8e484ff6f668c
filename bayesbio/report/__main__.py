"""``python -m bayesbio.report RESULTS.nc [--out report.html]``."""

import sys

from bayesbio.report import _standalone

sys.exit(_standalone())
