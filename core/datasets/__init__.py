"""The dataset engine: validate, count tokens, estimate cost, split (issue 4)."""
