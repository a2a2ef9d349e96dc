"""What syncctl remembers between runs: the journal of side effects and the run lock."""
