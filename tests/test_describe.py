"""Times as people read them."""

from __future__ import annotations

from tunedeck.core.describe import duration_text, eta_text


def test_an_eta_rounds_up_to_the_unit_it_shows():
    assert eta_text(0.2) == "1s" and eta_text(59.0) == "59s" and eta_text(59.5) == "1m"
    assert eta_text(119) == "2m" and eta_text(120) == "2m" and eta_text(121) == "3m"
    assert eta_text(3599.5) == "1h00m" and eta_text(2 * 86400 + 1) == "2d01h"
    assert eta_text(None) == eta_text(-1) == eta_text(float("nan")) == "-"
    assert duration_text(119, compact=True) == "1m"  # a time gone by still counts whole minutes passed
