"""Temporal consistency between a caption's years and an entity's life span, on real WikiMEL cases."""

from __future__ import annotations

from vplink.retrieval.dates import date_consistency, lifespan, text_years


def test_years_in_captions() -> None:
    assert text_years("An 1873 portrait of Lord Halifax by Anthony de Brie.") == [(1873, 1873)]
    assert text_years("Treisault in the 1920s.") == [(1920, 1929)]
    assert text_years("2,000 fans; version 1.2012; no year") == []
    assert text_years(None) == []


def test_life_spans_in_descriptions() -> None:
    assert lifespan("Sex: male. Birth: 1800, Pontefract. Death: 1885, Doncaster.") == (1800, 1885)
    assert lifespan("Sex: male. Birth: 1982, Mumbai. Occupation: actor.") == (1982, None)
    assert lifespan("Sex: male. Birth: 0825, Rome. Death: 0875, Brescia.") == (825, 875)
    assert lifespan("English poet (1858–1928)") == (1858, 1928)
    assert lifespan("An American rock band") == (None, None)


def test_consistency_tells_same_surname_people_apart() -> None:
    years = text_years("An 1873 portrait of Lord Halifax")
    assert date_consistency(years, (1800, 1885)) == 1.0   # Charles Wood, 1st Viscount Halifax (the gold)
    assert date_consistency(years, (1661, 1715)) == -1.0  # Charles Montagu, 1st Earl of Halifax
    assert date_consistency(text_years("McGraw in May 2013"), (1914, 1980)) == -1.0
    assert date_consistency(text_years("McGraw in May 2013"), (1950, None)) == 1.0
    assert date_consistency(text_years("Born 1850s"), (None, 1920)) == 1.0  # death only: at most 100 years before
    assert date_consistency([], (1800, 1885)) == 0.0
    assert date_consistency(years, (None, None)) == 0.0


def test_many_windows_at_once_match_one_at_a_time() -> None:
    import numpy as np

    from vplink.retrieval.dates import date_consistency_many, life_window

    years = text_years("Halifax in the 1870s, and again in 1905")
    spans = [(1800, 1885), (1661, 1715), (None, 1920), (1950, None), (None, None)]
    windows = np.array([life_window(s) or (np.nan, np.nan) for s in spans], dtype=float)
    together = date_consistency_many(years, windows[:, 0], windows[:, 1])
    assert together.tolist() == [date_consistency(years, s) for s in spans] == [1.0, -1.0, 1.0, -1.0, 0.0]
