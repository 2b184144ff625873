"""The bounds that keep search cheap at 1M studies (see bench/RESULTS.md)."""

from bot.search import match_all, one_edit_away


def test_short_last_words_match_whole_words_only():
    assert match_all(["wechsler", "a"], prefix_last=True) == '"wechsler" "a"'
    assert match_all(["hair", "los"], prefix_last=True) == '"hair" "los"*'


def test_one_edit_variants_cover_every_kind_of_typo():
    variants = one_edit_away("mesoterapy")
    assert "mesotherapy" in variants  # insertion
    assert "diabetes" in one_edit_away("diabetis")  # substitution
    assert "alzheimer" in one_edit_away("alzhiemer")  # transposition
    assert "migraine" in one_edit_away("migrane")
    assert "mesoterapy" not in variants
