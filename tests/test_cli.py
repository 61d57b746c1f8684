"""`jaxprop verify`: the table, the JSON, the exit status, and a broken backward pass named."""

import dataclasses
import json
import subprocess
import sys

import pytest

import jaxprop
from jaxprop.cli import main


def test_verify_all_pass_and_print_one_table(capsys):
    assert main(["verify", "--nodes"]) == 0
    out = capsys.readouterr().out
    for name in jaxprop.model_names():
        assert name in out
    assert "000_5eab1a4fa2460359.txt" in out and "001_90440b38c2c51fc3.txt" in out
    assert f"{len(jaxprop.model_names())} of {len(jaxprop.model_names())} models pass" in out


def test_verify_json_lists_models_with_per_leaf_errors(capsys):
    assert main(["verify", "--json", "--model", "two-layer-mse", "--model", "tanh-softmax"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True and payload["dtype"] == "float64"
    names = [m["name"] for m in payload["models"]]
    assert names == ["two-layer-mse", "tanh-softmax"]
    for m in payload["models"]:
        assert m["ok"] and m["source"].startswith(("000_", "001_"))
        for leaf in m["leaves"]:
            assert leaf["vs_auto"]["max_rel"] < 1e-12
            assert leaf["vs_fd"]["max_rel"] < 1e-6


def _broken(model, leaf):
    """The model with one line of its backward pass broken: one gradient leaf doubled."""

    def backward(params, x, saved, Y):
        grads, adjoints = model.backward(params, x, saved, Y)
        return {**grads, leaf: 2.0 * grads[leaf]}, adjoints

    return dataclasses.replace(model, backward=backward)


@pytest.mark.parametrize(("name", "leaf"), [("two-layer-mse", "U"), ("tanh-softmax", "b1")])
def test_a_broken_backward_exits_1_and_names_the_leaf(monkeypatch, capsys, name, leaf):
    monkeypatch.setitem(jaxprop.REGISTRY, name, _broken(jaxprop.get_model(name), leaf))
    assert main(["verify", "--model", name]) == 1
    assert f"FAIL at {leaf}" in capsys.readouterr().out
    assert main(["verify", "--model", name, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["models"][0]["failing"] == [leaf]


def test_unknown_model_is_a_usage_error(capsys):
    assert main(["verify", "--model", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_bad_options_exit_2():
    with pytest.raises(SystemExit) as e:
        main(["verify", "--batch", "0"])
    assert e.value.code == 2


def test_a_negative_seed_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["verify", "--model", "scalar-f", "--seed", "-1"])
    assert e.value.code == 2
    assert "--seed: must be a non-negative integer, got -1" in capsys.readouterr().err


def test_python_dash_m_runs_the_same_command():
    result = subprocess.run(
        [sys.executable, "-m", "jaxprop", "verify", "--model", "two-layer-mse", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["models"][0]["name"] == "two-layer-mse"


def test_a_batch_that_is_not_a_number_is_a_one_line_usage_error(capsys):
    # It read "invalid _positive_int value: 'x'", the name of a private function.
    with pytest.raises(SystemExit) as e:
        main(["verify", "--batch", "x"])
    assert e.value.code == 2
    assert "--batch: must be a positive integer, got x" in capsys.readouterr().err


def test_a_registered_model_without_init_is_a_usage_error(monkeypatch, capsys):
    # It ended in a traceback from verify_model.
    bare = dataclasses.replace(jaxprop.get_model("two-layer-mse"), name="bare", init=None)
    monkeypatch.setitem(jaxprop.REGISTRY, "bare", bare)
    assert main(["verify", "--model", "bare"]) == 2
    assert "models ['bare'] have no init or no sample" in capsys.readouterr().err


def test_a_model_named_twice_is_checked_once(capsys):
    assert main(["verify", "--json", "--model", "scalar-f", "--model", "scalar-f"]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)["models"]] == ["scalar-f"]
