"""The agezoo command beyond predict: the model list, and a reader that leaves early."""

import subprocess
import sys

import weights as weight_registry


def test_models_lists_every_released_model_and_marks_the_default(capsys):
    from agezoo.cli import main, model_rows

    rows = {r["name"]: r for r in model_rows()}
    released = {**weight_registry.released_cards(), **weight_registry.ENSEMBLES}
    assert set(released) <= set(rows)
    assert [n for n, r in rows.items() if r["default"]] == [weight_registry.default_age_model()]
    assert main(["models"]) == 0
    listed = capsys.readouterr().out.splitlines()
    (marked,) = [line for line in listed if line.startswith("*")]
    assert weight_registry.default_age_model() in marked


def test_a_closed_pipe_stops_the_command_quietly():
    """``agezoo models | head -0``: the reader is gone before anything is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agezoo.cli", "models", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err, err[-500:]
