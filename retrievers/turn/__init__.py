"""What every lookup of one turn shares, whatever it calls: the turn's deadline and why a fetch failed."""
