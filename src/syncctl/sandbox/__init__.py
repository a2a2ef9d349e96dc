"""Local emulators of the five vendor APIs (the embedded default and the test double)."""
