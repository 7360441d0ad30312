"""The web dashboard (`eraftd dashboard`): server.py serves static/ and /api/cluster."""
