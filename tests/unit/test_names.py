from svcnet.api.names import SUFFIX_ALPHABET, generate_name


def test_suffix_is_five_characters_from_upstream_alphabet():
    for _ in range(200):
        name = generate_name("web-")
        assert name.startswith("web-")
        suffix = name[len("web-") :]
        assert len(suffix) == 5
        assert set(suffix) <= set(SUFFIX_ALPHABET)


def test_long_base_is_cut_to_58_so_the_name_fits_63():
    # "a" is not in the suffix alphabet, so the cut is visible in the name itself.
    name = generate_name("a" * 100)
    assert len(name) == 63
    assert name[:58] == "a" * 58
    assert "a" not in name[58:]


def test_names_differ_between_calls():
    names = {generate_name("a-") for _ in range(500)}
    # 27**5 possibilities: 500 draws colliding more than a couple of times means no randomness.
    assert len(names) >= 495
