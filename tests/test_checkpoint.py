"""Checkpoint format versions: a file from a newer art-idfr fails with a message naming both versions; older files
(no writer version recorded) still load."""
import pytest
import torch

from art_idfr import IDFRDenoiser, __version__, checkpoint


def _saved(tmp_path):
    den = IDFRDenoiser(input_shape=(1, 8, 8), width=0.125, device_type="cpu")
    path = str(tmp_path / "id.pt")
    den.save(path)
    return path, torch.load(path, weights_only=True)


def _rewrite(path, payload):
    torch.save(payload, path)
    return path


def test_the_writer_version_is_recorded(tmp_path):
    _, payload = _saved(tmp_path)
    assert payload["art_idfr_version"] == __version__ and payload["version"] == checkpoint.VERSION


def test_a_newer_format_names_both_versions(tmp_path):
    path, payload = _saved(tmp_path)
    _rewrite(path, {**payload, "version": checkpoint.VERSION + 1, "art_idfr_version": "9.0.0"})
    with pytest.raises(ValueError, match=rf"written by art-idfr 9\.0\.0.*this is art-idfr {__version__}.*upgrade"):
        IDFRDenoiser.load(path)


def test_a_newer_writers_unknown_config_names_both_versions(tmp_path):
    """Same format, but a config key this version does not know (today: an unexpected-keyword error)."""
    path, payload = _saved(tmp_path)
    _rewrite(path, {**payload, "art_idfr_version": "9.0.0", "config": {**payload["config"], "new_knob": 3}})
    with pytest.raises(ValueError, match=rf"art-idfr 9\.0\.0; this is art-idfr {__version__}.*new_knob"):
        IDFRDenoiser.load(path)


def test_a_newer_writers_extra_weights_name_both_versions(tmp_path):
    path, payload = _saved(tmp_path)
    weights = {**payload["state_dict"], "new_layer.weight": torch.zeros(2)}
    _rewrite(path, {**payload, "art_idfr_version": "9.0.0", "state_dict": weights})
    with pytest.raises(ValueError, match=rf"(?s)art-idfr 9\.0\.0; this is art-idfr {__version__}.*new_layer"):
        IDFRDenoiser.load(path)


def test_the_same_problem_from_an_older_writer_is_reported_as_a_bad_file(tmp_path):
    path, payload = _saved(tmp_path)
    _rewrite(path, {**payload, "config": {**payload["config"], "new_knob": 3}})
    with pytest.raises(ValueError, match="stored IDFRDenoiser config is invalid") as err:
        IDFRDenoiser.load(path)
    assert "upgrade" not in str(err.value)


def test_a_file_from_before_versions_were_recorded_loads(tmp_path):
    path, payload = _saved(tmp_path)
    payload.pop("art_idfr_version")
    _rewrite(path, payload)
    assert IDFRDenoiser.load(path).input_shape == (1, 8, 8)


@pytest.mark.parametrize("version, newer", [("0.1.1", True), ("0.1.0", False), ("0.0.9", False),
                                            ("1.0.0rc1", True), ("garbage", False)])
def test_newer_writer_compares_releases(version, newer):
    assert bool(checkpoint.newer_writer({checkpoint.WRITER_KEY: version})) is newer
