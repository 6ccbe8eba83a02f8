"""The native launcher: the whole stack as local processes (`python -m stack up|down|status`)."""
