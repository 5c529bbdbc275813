"""The command line runs its embedded default end to end."""
from hiper.cli import main


def test_info(capsys):
    assert main(["info"]) == 0
    assert "CUDA backend compiled" in capsys.readouterr().out


def test_hae_on_embedded_batch(capsys):
    assert main(["hae", "--trajectories", "6", "--max-turns", "7", "--length", "64", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "token masks identical: True" in out
    assert "segments:" in out
