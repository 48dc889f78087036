"""The suite's machinery tests (kill, metrics, Telegram, drills) need a market that
trades within seconds: they run on the sim's "rehearsal" profile (a jumpy premium, a
30-second strategy), set here for this process and every subprocess it starts. Tests
about the economics ask for the "calibrated" profile explicitly."""
import os

os.environ.setdefault("ARBOPS_SIM_PROFILE", "rehearsal")
