"""Exercises and grading (jaxprop/teach/, `jaxprop exercise`, `jaxprop grade`): every built-in
Model gets an exercise that grades 0 untouched and full marks solved; typical wrong submissions
are scored and diagnosed at the wrong node; a submission written from scratch (a plain forward pass
with no taps, and its backward pass) is graded with its own forward pass, which must compute the
built-in output; a submission that raises, does not import, returns the wrong structure, hangs or
crashes is graded with a clear message, never a traceback."""

from __future__ import annotations

import ast
import json
import re

import pytest

import jaxprop
from jaxprop.cli import main
from jaxprop.teach import TODO, exercise_models, exercise_source, grade, grade_in_process
from jaxprop.teach.grade import _load, _setup, _unfilled
from jaxprop.teach.plan import _traced
from jaxprop.teach.source import _matches


def _write(tmp_path, text, name="submission.py"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _fill(name, fills, *, append=""):
    """The exercise of ``name`` with each TODO(...) call of ``fills`` replaced."""
    text = exercise_source(name)
    for todo, answer in fills.items():
        assert todo in text, todo
        text = text.replace(todo, answer)
    return text + append


# tanh-softmax, filled in right.
Z2, A1, Z1 = (f'TODO("{n}", like=saved["{n}"])' for n in ("z2", "a1", "z1"))
RIGHT = {Z2: '(_softmax.fn(saved["z2"]) - Y) / Y.shape[0]', A1: 'dz2 @ params["W2"].T',
         Z1: "da1 * (1 - a1**2)"}  # fmt: skip


def test_the_exercise_models_are_the_registered_models():
    assert exercise_models() == [
        name for name, e in jaxprop.REGISTRY.items() if isinstance(e, jaxprop.Model)
    ]
    assert len(exercise_models()) == 8


@pytest.fixture
def recorded_todos(monkeypatch):
    """The labels every TODO(...) is called with (the exercise file imports TODO at load)."""
    called = []
    real = TODO

    def recording(node, like=None, *, shape=None):
        called.append(node)
        return real(node, like, shape=shape)

    monkeypatch.setattr("jaxprop.teach.TODO", recording)
    return called


@pytest.mark.parametrize("name", exercise_models())
def test_each_exercise_cites_its_equations_and_runs_untouched(name, tmp_path, recorded_todos):
    text = exercise_source(name)
    assert f"MODEL = {json.dumps(name)}" in text and "CONFIG = {}" in text
    model = jaxprop.get_model(name)
    # One TODO per statement computing a node's adjoint, each under a comment citing the
    # equation; none leaks an errata note or a formula of the document's slips.
    for line in text.splitlines():
        if line.strip().startswith("# TODO"):
            assert re.search(r": .*(\(|\[|\d{3}|see )", line), line
            assert "correct" not in line and "printed" not in line, line
    backward = text[text.index("# ---- The backward pass") :]
    assert "correct" not in backward
    labels = _unfilled(ast.parse(text))
    # The untouched file imports and its backward pass runs (traced at the graded point, so
    # nothing is compiled), with the nodes' shapes, and every TODO in it runs: the student's
    # code, not the built-in one, computes every adjoint.
    module = _load(str(_write(tmp_path, text)))

    def run(params, x, Y):
        _, saved = model.run_forward(params, x)
        _, adjoints = module.backward(params, x, saved, Y)
        nodes = model.node_names(params)
        assert all(any(_matches(label, n) for label in labels) for n in nodes)
        return {n: (adjoints[n].shape, saved[n].shape) for n in nodes}

    shapes = _traced(model, run)
    assert shapes and all(a == b for a, b in shapes.values()), shapes
    assert set(recorded_todos) == set(labels)
    compile(exercise_source(name, solution=True), name, "exec")


@pytest.mark.parametrize("name", ["tanh-softmax", "k-layer"])
def test_an_exercise_grades_zero_untouched_and_full_marks_solved(name, tmp_path):
    report = grade_in_process(_write(tmp_path, exercise_source(name)))
    assert report.status == "graded" and report.error is None, str(report)
    assert report.score == 0 and report.max_score == {"tanh-softmax": 3, "k-layer": 6}[name]
    assert {(n.feedback, n.kind) for n in report.nodes} == {("not filled in", "not-filled-in")}
    assert report.diagnosis is None and "score: 0/" in str(report)
    solved = grade_in_process(_write(tmp_path, exercise_source(name, solution=True), "key.py"))
    assert solved.ok and solved.score == solved.max_score, str(solved)
    assert solved.grads == {"ok": True, "failing": [], "error": None}
    assert all(n.feedback == "ok" and n.kind is None for n in solved.nodes)
    if name == "k-layer":
        # A slip inside the loop over layers: the factor 2 of ∂‖y − f_K‖²/∂f_K dropped, so
        # ∂L/∂f3 is half the true adjoint and every node after it inherits.
        fills = {
            'df = TODO("f{i}", like=Y)': 'df = (saved[f"f{K}"] - Y) / Y.shape[0]',
            'dZ = TODO("Z{i}", like=df)': 'dZ = df * saved[f"f{i}"] * (1 - saved[f"f{i}"])',
            'df = TODO("f{i}", like=f_prev)': 'df = dZ @ layer["A"]',
        }
        wrong = grade_in_process(_write(tmp_path, _fill("k-layer", fills), "half.py"))
        assert (wrong.score, wrong.first_failing, wrong.nodes[0].kind) == (0, "f3", "scale")
        assert "1/2" in wrong.nodes[0].feedback, str(wrong)
        assert {n.feedback for n in wrong.nodes[1:]} == {"inherits the error of f3"}


def test_a_configured_model_records_its_config(tmp_path):
    text = exercise_source("k-layer", activations=("tanh", "identity"))
    assert 'CONFIG = {"activations": ("tanh", "identity")}' in text
    assert '(jaxprop.ACTIVATIONS["tanh"], jaxprop.ACTIVATIONS["identity"])' in text
    path = _write(
        tmp_path, exercise_source("k-layer", solution=True, activations=["tanh", "identity"])
    )
    setup = _setup(str(path), None)
    assert setup.error is None and setup.model.name == "k-layer[tanh,identity]"
    assert setup.nodes == ("Z1", "f1", "Z2", "f2")
    pinned = _setup(str(path), "k-layer")
    assert "is not the assignment's configuration {}" in pinned.error


# Typical wrong submissions: (fills over RIGHT, score, first failing node, kind).
WRONG = {
    "sign": ({Z2: '(Y - _softmax.fn(saved["z2"])) / Y.shape[0]'}, 0, "z2", "sign"),
    "batch mean 1/B dropped": ({Z2: '_softmax.fn(saved["z2"]) - Y'}, 0, "z2", "scale"),
    "tanh′ skipped": ({Z1: "da1"}, 2, "z1", "missing-local-derivative"),
    "tanh for tanh′": ({Z1: "da1 * a1"}, 2, "z1", "elementwise-factor"),
    "zero adjoint": ({A1: '0.0 * (dz2 @ params["W2"].T)'}, 1, "a1", "zero"),
    "transposed adjoint": (
        {'"a1": da1,': '"a1": da1.T,'},
        2,
        "a1",
        "transpose",
    ),
}


@pytest.mark.parametrize("case", WRONG, ids=list(WRONG))
def test_a_wrong_submission_is_scored_and_diagnosed_at_its_node(case, tmp_path):
    fills, score, node, kind = WRONG[case]
    report = grade_in_process(_write(tmp_path, _fill("tanh-softmax", {**RIGHT, **fills})))
    assert report.status == "graded" and report.score == score and report.max_score == 3
    assert report.first_failing == node, str(report)
    by_name = {n.name: n for n in report.nodes}
    assert by_name[node].kind == kind, str(report)
    assert f"∂L/∂{node}" in by_name[node].feedback, str(report)
    assert report.diagnosis is not None and report.diagnosis["kind"] == kind
    later = [n for n in report.nodes[[n.name for n in report.nodes].index(node) + 1 :] if not n.ok]
    assert all(n.feedback == f"inherits the error of {node}" for n in later), str(report)
    assert not report.ok and report.grads["ok"] is (case == "transposed adjoint")
    text = str(report)
    assert f"score: {score}/3" in text and by_name[node].feedback in text


def test_a_partly_filled_submission_gets_the_nodes_it_has(tmp_path):
    report = grade_in_process(_write(tmp_path, _fill("tanh-softmax", {Z2: RIGHT[Z2]})))
    assert report.score == 1 and [n.feedback for n in report.nodes] == [
        "ok", "not filled in", "not filled in"
    ]  # fmt: skip
    assert report.unfilled == ("a1", "z1") and report.diagnosis is None


def test_a_missing_node_is_named(tmp_path):
    fills = {**RIGHT, '{"z1": dz1, "a1": da1, "z2": dz2}': '{"z1": dz1, "z2": dz2}'}
    report = grade_in_process(_write(tmp_path, _fill("tanh-softmax", fills)))
    assert report.score == 2 and report.first_failing == "a1"
    assert "missing" in report.nodes[1].feedback


# A submission written from scratch: a plain forward pass (no taps, no jaxprop) and its backward.
PLAIN = """import jax
import jax.numpy as jnp

MODEL = "tanh-softmax"


def forward(params, x):
    z1 = x @ params["W1"] + params["b1"][None, :]
    a1 = jnp.tanh(z1)
    z2 = a1 @ params["W2"] + params["b2"][None, :]
    return z2, {"z1": z1, "a1": a1, "z2": z2}


def backward(params, x, saved, Y):
    dz2 = (jax.nn.softmax(saved["z2"], axis=1) - Y) / Y.shape[0]
    da1 = dz2 @ params["W2"].T
    dz1 = da1 * (1 - saved["a1"] ** 2)
    grads = {"W1": x.T @ dz1, "b1": dz1.sum(axis=0), "W2": saved["a1"].T @ dz2,
             "b2": dz2.sum(axis=0)}
    return grads, {"z1": dz1, "a1": da1, "z2": dz2}
"""

# (edits of PLAIN, score, first failing node, {node: (kind, what its feedback says)}).
FROM_SCRATCH = {
    "right": ({}, 3, None, {}),
    "tanh′ skipped": (
        {'dz1 = da1 * (1 - saved["a1"] ** 2)': "dz1 = da1"}, 2, "z1",
        {"z1": ("missing-local-derivative", "∂L/∂z1 equals the true adjoint of a1")},
    ),
    "sign": (
        {'(jax.nn.softmax(saved["z2"], axis=1) - Y)': '(Y - jax.nn.softmax(saved["z2"], axis=1))'},
        0, "z2", {"z2": ("sign", "opposite sign"), "a1": ("inherits", "inherits the error of z2"),
                  "z1": ("inherits", "inherits the error of z2")},
    ),
    "adjoint missing": (
        {'{"z1": dz1, "a1": da1, "z2": dz2}': '{"z1": dz1, "z2": dz2}'}, 2, None,
        {"a1": ("not-checked", "∂L/∂a1 is missing from the hand adjoints")},
    ),
    "another value saved": (
        {'    z1 = x @ params["W1"] + params["b1"][None, :]\n':
         '    p = x @ params["W1"]\n    z1 = p + params["b1"][None, :]\n',
         '{"z1": z1, "a1"': '{"z1": p, "a1"'}, 2, None,
        {"z1": ("not-checked", "the value forward saves under 'z1' is not tanh-softmax's z1 (a "
                "relative difference of")},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", FROM_SCRATCH, ids=list(FROM_SCRATCH))
def test_a_submission_written_from_scratch_is_graded_with_its_own_forward_pass(case, tmp_path):
    edits, score, first, said = FROM_SCRATCH[case]
    text = PLAIN
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    # Eagerly for most cases, under jit (as in the grading subprocess) for one.
    report = grade_in_process(_write(tmp_path, text), jit=case == "sign")
    assert report.status == "graded" and report.error is None, str(report)
    assert (report.score, report.max_score, report.first_failing) == (score, 3, first), str(report)
    assert [n.name for n in report.nodes] == ["z2", "a1", "z1"]
    assert report.ok is (case == "right") and report.notes == ()
    by_name = {n.name: n for n in report.nodes}
    for node, (kind, feedback) in said.items():
        assert by_name[node].kind == kind and feedback in by_name[node].feedback, str(report)
    assert all(n.ok for n in report.nodes if n.name not in said and n.name != first)
    assert report.grads["ok"] is (case in ("right", "adjoint missing", "another value saved"))


def test_a_submission_whose_forward_pass_differs_is_told_so(tmp_path):
    text = PLAIN.replace("a1 = jnp.tanh(z1)", "a1 = jax.nn.sigmoid(z1)")
    report = grade_in_process(_write(tmp_path, text))
    assert (report.status, report.score, report.max_score) == ("error", 0, 3)
    assert re.match(
        r"the forward pass differs from tanh-softmax's: its output has a relative difference of "
        r"\S+ \(worst at \[\d+, \d+\]: yours \S+, built-in \S+\); it must compute tanh-softmax's "
        r"output \(to 1e-12 relative, in float64\)", report.error
    ), report.error  # fmt: skip
    assert {n.feedback for n in report.nodes} == {"not checked: the forward pass differs"}
    shape = grade_in_process(
        _write(tmp_path, PLAIN.replace("return z2, {", "return z1, {"), "s.py")
    )
    assert "its output has a shape (7, 500), not (7, 2)" in shape.error
    raises = grade_in_process(
        _write(tmp_path, PLAIN.replace("a1 = jnp.tanh(z1)", "a1 = jnp.tanh(z0)"), "r.py")
    )
    assert raises.status == "error" and raises.score == 0
    assert re.match(
        r"forward raised NameError: name 'z0' is not defined \(line \d+: a1 = ", raises.error
    )


@pytest.mark.parametrize(
    ("fills", "append", "error"),
    [
        ({A1: 'dz2 @ params["W3"].T'}, "", r"^backward raised KeyError: 'W3' \(line \d+: da1 = "),
        ({}, "\nprint(undefined_name)\n",
         r"^the file does not import: NameError: name 'undefined_name' is not defined \(line \d+"),
        ({Z2: "(Y - "}, "", r"^the file does not parse: SyntaxError: .* \(line \d+"),
        ({'return grads, {"z1": dz1, "a1": da1, "z2": dz2}': "return grads"}, "",
         r"^backward returned a dict; it must return a pair \(grads, adjoints\)"),
        ({'return grads, {"z1": dz1, "a1": da1, "z2": dz2}': "return grads, [dz1, da1, dz2]"}, "",
         r"adjoints .* are a list; they must be a dict from node name to ∂L/∂node"),
        ({"def backward(": "def backwards("}, "",
         r"^the file defines no function backward\(params, x, saved, Y\)"),
        ({'MODEL = "tanh-softmax"': "MODE = 1"}, "", r'MODEL = "\.\.\." is missing'),
        ({'MODEL = "tanh-softmax"': 'MODEL = "scalar-f"'}, "", r"worked example"),
    ],
    ids=["raises", "import", "syntax", "not-a-pair", "adjoints-list", "no-backward", "no-model",
         "example"],
)  # fmt: skip
def test_a_broken_submission_is_graded_with_a_clear_message(tmp_path, fills, append, error):
    report = grade_in_process(
        _write(tmp_path, _fill("tanh-softmax", {**RIGHT, **fills}, append=append))
    )
    assert report.status == "error" and report.score == 0 and not report.ok
    assert re.search(error, report.error), report.error
    assert "Traceback" not in str(report) and "\n" not in report.error
    if report.model == "tanh-softmax":
        assert report.max_score == 3 and all(n.kind == "not-checked" for n in report.nodes)


def test_a_pinned_model_refuses_another_models_file(tmp_path):
    path = _write(tmp_path, _fill("tanh-softmax", RIGHT))
    report = grade_in_process(path, model="k-layer")
    assert report.status == "error" and report.max_score == 6 and report.model == "k-layer"
    assert "the exercise for 'tanh-softmax', not for 'k-layer'" in report.error
    assert grade_in_process(path, model="tanh-softmax").ok


def test_a_submission_that_hangs_times_out(tmp_path):
    hang = "\nimport time\n\ntime.sleep(600)  # a hang that burns no CPU\n"
    path = _write(tmp_path, _fill("tanh-softmax", RIGHT, append=hang))
    report = grade(path, timeout=3)
    assert report.status == "timeout" and report.score == 0 and report.max_score == 3
    assert report.error.startswith("timed out after 3 s")
    assert {n.feedback for n in report.nodes} == {"not checked: timed out"}


def test_grade_json_from_the_command_line_for_a_submission_that_kills_the_interpreter(
    tmp_path, capsys
):
    text = _fill("tanh-softmax", RIGHT).replace(
        "from __future__ import annotations",
        "from __future__ import annotations\n\nimport os\n\nos._exit(3)",
    )
    assert main(["grade", str(_write(tmp_path, text)), "--json", "--timeout", "30"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert list(payload) == [
        "schema", "file", "model", "config", "score", "max_score", "ok", "status", "error",
        "first_failing", "nodes", "diagnosis", "grads", "unfilled", "notes", "point",
    ]  # fmt: skip
    assert payload["schema"] == "jaxprop.grade/1" and payload["status"] == "error"
    assert (payload["score"], payload["max_score"], payload["ok"]) == (0, 3, False)
    assert payload["error"] == "the grading process died (exit status 3) before it could report"
    assert [n["name"] for n in payload["nodes"]] == ["z2", "a1", "z1"]
    assert payload["point"] == {"dtype": "float64", "seed": 0, "batch": 7}


def test_grade_exit_status_and_text(tmp_path, capsys, monkeypatch):
    # The CLI around an in-process grade (the subprocess is tested above).
    monkeypatch.setattr(
        "jaxprop.teach.sandbox.grade", lambda path, **kw: grade_in_process(path, model=kw["model"])
    )
    path = _write(tmp_path, _fill("tanh-softmax", {**RIGHT, **WRONG["tanh′ skipped"][0]}))
    assert main(["grade", str(path)]) == 1
    out = capsys.readouterr().out
    assert "z1    FAIL     ∂L/∂z1 equals the true adjoint of a1" in out and "score: 2/3" in out
    assert "parameter gradients (not scored): wrong at W1, b1" in out
    path = _write(tmp_path, _fill("tanh-softmax", RIGHT), "right.py")
    assert main(["grade", str(path)]) == 0
    assert "score: 3/3" in capsys.readouterr().out
    assert main(["grade", str(tmp_path / "nowhere.py")]) == 2
    assert "no file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["grade", str(path), "--timeout", "0"])
    assert e.value.code == 2


def test_exercise_command_writes_refuses_and_explains(tmp_path, capsys):
    out = tmp_path / "hw.py"
    assert main(["exercise", "tanh-softmax", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}" in said and "3 TODOs" in said and "jaxprop grade" in said
    assert out.read_text(encoding="utf-8") == exercise_source("tanh-softmax")
    assert main(["exercise", "tanh-softmax", "--out", str(out)]) == 2
    assert "exists; pass --force to overwrite it" in capsys.readouterr().err
    assert main(["exercise", "k-layer", "--out", str(out), "--force", "--solution"]) == 0
    assert "TODO(" not in out.read_text(encoding="utf-8")
    capsys.readouterr()
    for argv, message in [
        (["exercise", "scalar-f"], "'scalar-f' is a worked example (Example), not a Model"),
        (["exercise", "nope"], "unknown model 'nope'; exercises exist for ['two-layer-mse'"),
        (["exercise", "tanh-softmax", "--out", str(tmp_path / "no" / "hw.py")], "does not exist"),
        (["exercise", "tanh-softmax", "--out", str(tmp_path)], "is a directory"),
        (["exercise", "tanh-softmax", "--activations", "relu"], "has one configuration"),
    ]:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert main(["exercise", "least-squares"]) == 0
    assert capsys.readouterr().out == exercise_source("least-squares")


def test_write_exercise_refuses_to_overwrite(tmp_path):
    path = jaxprop.write_exercise("least-squares", tmp_path / "ls.py")
    with pytest.raises(FileExistsError):
        jaxprop.write_exercise("least-squares", path)
    jaxprop.write_exercise("least-squares", path, force=True, solution=True)
    with pytest.raises(ValueError, match="exercises exist for"):
        jaxprop.exercise_source("df/dA")


def test_the_teaching_guide_runs_and_shows_what_it_prints(tmp_path, monkeypatch):
    """docs/teaching.md: its python blocks run in order in one namespace and its console blocks
    through jaxprop.cli.main, in an empty directory; what each prints is what the guide shows,
    figures blanked (the grading in this process: the subprocess is tested above)."""
    import contextlib
    import io
    import pathlib
    import shlex

    from test_docs_nodes import normalise

    def in_process(path, *, timeout=None, model=None, config=None):
        return grade_in_process(path, model=model, config=config)

    monkeypatch.setattr("jaxprop.teach.sandbox.grade", in_process)
    monkeypatch.setattr(jaxprop, "grade", in_process)
    monkeypatch.chdir(tmp_path)
    guide = pathlib.Path(__file__).resolve().parent.parent / "docs" / "teaching.md"
    blocks = re.findall(
        r"```(python|console|text)\n(.*?)```", guide.read_text(encoding="utf-8"), re.S
    )
    namespace: dict = {"__name__": "guide"}
    printed, compared = None, 0
    for kind, body in blocks:
        if kind == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(body, str(guide), "exec"), namespace)
            printed = out.getvalue()
        elif kind == "text":
            assert printed is not None, f"a text block follows no python block:\n{body}"
            assert normalise(body) == normalise(printed), f"guide shows\n{body}\nprints\n{printed}"
            printed, compared = None, compared + 1
        else:
            for command in re.split(r"^\$ ", body, flags=re.M)[1:]:
                line, _, shown = command.partition("\n")
                argv = shlex.split(line)
                assert argv[0] == "jaxprop", line
                out = io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                    try:
                        main(argv[1:])
                    except SystemExit:
                        pass
                assert normalise(shown) == normalise(out.getvalue()), (
                    f"guide shows for `{line}`\n{shown}\nprints\n{out.getvalue()}"
                )
                compared += 1
    assert compared >= 8
