"""ScreenSR: the command line and the glue (doctor, weights, demo) over the four packages.

The packages ``benchmark``, ``vosr``, ``data_capture`` and ``leaderboard`` are usable on their own;
this package only wires them into one ``screensr`` command.
"""

__version__ = "0.1.0"
