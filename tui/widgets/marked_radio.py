"""A radio button whose mark says by its shape whether it is chosen.

Textual's radio buttons tell chosen from not by colour alone, which a `NO_COLOR` terminal
(or a colour-blind user) cannot see: this one draws `(•)` for the chosen one and `( )` for
the others."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import RadioButton


class MarkedRadioButton(RadioButton):
    @property
    def _button(self) -> Content:
        style = self.get_visual_style("toggle--button")
        return Content.assemble("(", ("•" if self.value else " ", style), ")")
