"""The chaos counts (kills survived, races consistent, requests fuzzed) are printed at the end of the session by
hooks in tests/conftest.py: under xdist only the controller prints, and it loads no conftest below tests/."""
