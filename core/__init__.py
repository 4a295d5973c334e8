"""The async core of tunedeck: no Textual imports here (a test enforces it)."""

__version__ = "0.1.0"
