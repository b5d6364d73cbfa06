"""`charlm gradcheck`: table or JSON on stdout; exit 0 if every gradient matches, 1 if not, 2 on bad flags."""

import json

import pytest
from helpers import invoke

from charlm.models import lm as model


def run(*args):
    return invoke("gradcheck", *args)


@pytest.mark.parametrize("args", [
    ["--cell", "lstm", "--layers", "2", "--hidden", "4", "--seq-len", "3", "--batch", "2"],
    ["--cell", "gru", "--layers", "1", "--hidden", "3", "--seq-len", "1", "--batch", "1", "--embed", "2"],
    ["--cell", "rnn", "--activation", "relu", "--hidden", "3", "--seq-len", "2", "--batch", "2",
     "--dropout", "0.2"],
])
def test_passing_check_prints_a_table_and_exits_0(args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    for name in ("layer.0.Wx", "layer.0.Wh", "layer.0.b", "head.W", "head.b", "state.0.0"):
        assert name in result.output
    assert "FAIL" not in result.output and "ok" in result.output


def test_json_output_lists_every_tensor():
    result = run("--cell", "gru-simple", "--layers", "2", "--hidden", "3", "--embed", "2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] is True
    names = [r["name"] for r in report["results"]]
    assert names == ["embed.W", "layer.0.Wx", "layer.0.Wh", "layer.0.b", "layer.1.Wx", "layer.1.Wh",
                     "layer.1.b", "head.W", "head.b", "state.0.0", "state.1.0"]
    assert all(r["max_rel_error"] < 1e-6 for r in report["results"])


def test_wrong_gradient_exits_1_with_one_line(monkeypatch):
    real = model.loss_grads_and_dstate

    def off_by_a_bit(*args, **kwargs):  # the loss stays right, one analytic gradient is 0.1% off
        loss, grads, new_state, dstate = real(*args, **kwargs)
        grads["layer.0.b"] *= 1.001
        return loss, grads, new_state, dstate

    monkeypatch.setattr(model, "loss_grads_and_dstate", off_by_a_bit)
    result = run("--cell", "lstm", "--layers", "1", "--hidden", "3", "--seq-len", "2", "--batch", "2")
    assert result.exit_code == 1
    assert "FAIL" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: gradient check failed for 1 of") and "layer.0.b" in last


@pytest.mark.parametrize("args", [["--cell", "transformer"], ["--hidden", "0"], ["--dropout", "1"]])
def test_bad_flags_exit_2(args):
    assert run(*args).exit_code == 2


def test_tie_checks_a_tied_head_with_embed_equal_to_hidden():
    result = run("--tie", "--cell", "gru", "--layers", "1", "--hidden", "4", "--vocab", "40", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] is True
    assert report["config"]["tie"] is True and report["config"]["embed"] == 4
    names = [r["name"] for r in report["results"]]
    assert names == ["embed.W", "layer.0.Wx", "layer.0.Wh", "layer.0.b", "head.b", "state.0.0"]
    table = run("--tie", "--cell", "lstm", "--layers", "2", "--hidden", "3", "--vocab", "20")
    assert table.exit_code == 0, table.output
    assert "tied" in table.output and "head.W" not in table.output and "FAIL" not in table.output


def test_tie_with_a_different_embed_width_exits_2_naming_the_flags():
    result = run("--tie", "--embed", "3", "--hidden", "4")
    assert result.exit_code == 2
    assert "--tie needs --embed equal to --hidden (got --embed 3, --hidden 4)" in result.output
