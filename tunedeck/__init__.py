"""tunedeck: the fine-tuning loop in a terminal. See tunedeck.core and tunedeck.tui."""
