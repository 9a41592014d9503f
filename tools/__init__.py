"""Project tooling: checks run by the test command, not shipped in the wheel."""
