"""The verification core: one policy in one module, a passive contract, and the scale rule at a
stationary point (where every true gradient is round-off) and away from it."""

from __future__ import annotations

import ast
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop

PACKAGE = pathlib.Path(jaxprop.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> list[tuple[str, list[str]]]:
    """Every ``import`` of a jaxprop module in a file (at any depth): (module, names)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxprop"):
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("jaxprop")]
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _graph() -> dict[str, set[str]]:
    """Module -> the jaxprop modules it imports. ``from jaxprop.a import b`` is an edge to
    ``jaxprop.a.b`` when that is a module, else to ``jaxprop.a``; the root package, which only
    re-exports, is left out."""
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for module, names in _imports(path):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
            edges |= set(targets) if targets and len(targets) == len(names) else {module}
        graph[name] = {e for e in edges if e != "jaxprop" and e != name}
    return graph


def test_no_import_circle_in_the_package():
    graph, cycles = _graph(), []

    def visit(node, stack):
        for nxt in graph.get(node, ()):
            if nxt in stack:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif len(stack) < 30:
                visit(nxt, [*stack, nxt])

    for name in graph:
        visit(name, [name])
    assert not cycles, f"import circles: {sorted(set(cycles))[:5]}"


# The layers: each subpackage's ``__init__`` docstring says which other subpackages it may import
# ("May import: ``a``, ``b``." or "May import: nothing of jaxprop."); the top-level modules beside
# them are stated here.
TOP_LEVEL = {"jaxprop.testing": {"check"}, "jaxprop.__main__": {"cli"}}


def _layer(module: str) -> str:
    """The subpackage (or top-level module) a jaxprop module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _allowed() -> dict[str, set[str]]:
    allowed = {}
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        match = re.search(r"May import: (.*?)\.(\s|$)", doc, re.S)
        assert match, (
            f"{init.relative_to(PACKAGE.parent)}: no 'May import: ...' line in its docstring"
        )
        allowed[init.parent.name] = set(re.findall(r"``(\w+)``", match.group(1)))
    return allowed


def _against(name: str, path: pathlib.Path, allowed: dict[str, set[str]]) -> list[str]:
    """The imports of module ``name`` (file ``path``) that go against its layer."""
    own = _layer(name)
    may = TOP_LEVEL[name] if name in TOP_LEVEL else allowed[own]
    against = []
    for module, names in _imports(path):
        if module == "jaxprop":  # the root package imports every layer
            against.append(f"{name} imports jaxprop ({', '.join(names) or 'the package'})")
        elif _layer(module) != own and _layer(module) not in may:
            against.append(f"{name} imports {module} ({_layer(module)} is not in {sorted(may)})")
    return against


def test_every_subpackage_states_its_layer_and_no_import_goes_against_it():
    allowed = _allowed()
    assert {"check", "model", "models", "nn", "registry", "teach", "training", "cli"} <= set(
        allowed
    )
    # The public face re-exports every layer.
    against = [a for n, p in MODULES.items() if n != "jaxprop" for a in _against(n, p, allowed)]
    assert not against, "\n".join(against)


def test_the_layer_test_fails_on_an_import_against_the_layers(tmp_path):
    allowed, path = _allowed(), tmp_path / "m.py"
    path.write_text(
        "import jax\n"
        "from jaxprop.check.compare import compare\n"
        "def f():\n"
        "    from jaxprop.training.loop import train\n"  # at any depth
    )
    assert _against("jaxprop.models.m", path, allowed) == [
        "jaxprop.models.m imports jaxprop.check.compare (check is not in ['model', 'nn', 'util'])",
        "jaxprop.models.m imports jaxprop.training.loop "
        "(training is not in ['model', 'nn', 'util'])",
    ]
    assert len(_against("jaxprop.check.m", path, allowed)) == 1  # training, from the checker
    path.write_text("import jaxprop\n")
    assert _against("jaxprop.nn.m", path, allowed) == ["jaxprop.nn.m imports jaxprop (the package)"]


def test_the_top_level_holds_at_most_four_modules_and_none_is_over_600_lines():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 4, top
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert not long, long


def test_the_contract_imports_nothing_of_the_checker():
    for name, path in MODULES.items():
        if _layer(name) in ("model", "models", "nn"):
            checker = [m for m, _ in _imports(path) if _layer(m) in ("check", "registry")]
            assert not checker, f"{name} imports the checker: {checker}"


def test_tolerance_numbers_and_the_scale_rule_live_in_the_core_only():
    # The tolerances (1e-10, 1e-6, 1e-4, 1e-2 by dtype), the peak fraction, and the floors a
    # relative error was once given in four files (1e-300, finfo(...).tiny, "* 1e-6").
    pattern = re.compile(r"1e-300|\.tiny\b|\* 1e-6|1e-10|_TOLERANCES|PEAK_FRACTION\s*=")
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{i}"
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).as_posix() not in ("check/tolerance.py", "check/compare.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith(("#", "float64", "float32"))
    ]
    assert not offenders, offenders
    assert "_TOLERANCES = {" in (PACKAGE / "check" / "tolerance.py").read_text()


def test_every_report_shares_the_core_base():
    for cls in (jaxprop.GradReport, jaxprop.NodeReport, jaxprop.ModelReport):
        assert issubclass(cls, jaxprop.Report)


# ---------------------------------------------------------------------------------------------
# The stationary point: a correct least-squares gradient at the minimiser.


def _normal_form(p, Phi, y):
    # ∂L/∂θ = (2/N)(ΦᵀΦθ − Φᵀy), 002_dadcaa6bdb722c5e.txt (5.83) over N, summed in another order
    # than jax.grad does: at the minimum the two differ by round-off only.
    N = Phi.shape[0]
    return {"theta": 2 / N * (Phi.T @ (Phi @ p["theta"]) - Phi.T @ y)}


@pytest.fixture(scope="module")
def minimum():
    model = jaxprop.get_model("least-squares")
    with jax.enable_x64(True):
        kx, ky = jax.random.split(jax.random.key(0))
        Phi = jax.random.normal(kx, (200, 8), jnp.float64)
        y = jax.random.normal(ky, (200,), jnp.float64)
        theta = jnp.linalg.lstsq(Phi, y)[0]
    return model, {"theta": theta}, Phi, y


def test_a_correct_gradient_at_the_minimum_passes(minimum):
    model, p, Phi, y = minimum
    with jax.enable_x64(True):
        true = np.asarray(jax.grad(model.loss)(p, Phi, y)["theta"])
        hand = np.asarray(_normal_form(p, Phi, y)["theta"])
    assert np.max(np.abs(true)) < 1e-14  # every true gradient is round-off ...
    assert np.max(np.abs(hand - true)) > np.max(np.abs(true)) / 10  # ... and so is the hand one
    report = jaxprop.check_grads(model.loss, _normal_form, p, Phi, y)
    assert report.ok, str(report)
    # Relative to the measured rounding noise of a correct gradient (10 times it is allowed),
    # not to the round-off: the correct gradient uses a quarter of the tolerance at most.
    assert report["theta"].vs_auto.max_rel < 0.25 * report["theta"].vs_auto.rtol


def test_one_element_off_by_1e_3_at_the_minimum_fails(minimum):
    model, p, Phi, y = minimum

    def off(p, Phi, y):
        return {"theta": _normal_form(p, Phi, y)["theta"].at[3].add(1e-3)}

    report = jaxprop.check_grads(model.loss, off, p, Phi, y)
    assert report.failing == ("theta",)
    assert report["theta"].vs_auto.worst_index == (3,)
    assert report["theta"].vs_auto.max_rel > 1.0


def test_an_all_zero_hand_gradient_at_the_minimum_prints_a_finite_small_error(minimum):
    # With the scale max|ref| alone the quotient was round-off over round-off, or 1e-16 / tiny.
    model, p, Phi, y = minimum
    zero = jaxprop.check_grads(model.loss, lambda p, *_: jax.tree.map(jnp.zeros_like, p), p, Phi, y)
    assert zero.ok and zero["theta"].vs_auto.max_rel < 1e-10


def test_away_from_the_minimum_the_scale_is_the_reference_itself(minimum):
    model, p, Phi, y = minimum
    p = {"theta": p["theta"] + 0.5}
    with jax.enable_x64(True):
        true = np.asarray(jax.grad(model.loss)(p, Phi, y)["theta"])

    def off(p, Phi, y):  # one element off by 1e-6 of the largest gradient
        return {"theta": _normal_form(p, Phi, y)["theta"].at[0].add(1e-6 * np.max(np.abs(true)))}

    good = jaxprop.check_grads(model.loss, _normal_form, p, Phi, y, fd=False)
    bad = jaxprop.check_grads(model.loss, off, p, Phi, y, fd=False)
    assert good.ok and not bad.ok
    c = bad["theta"].vs_auto
    assert c.max_rel == pytest.approx(c.max_abs / np.max(np.abs(true)), rel=1e-12)
    assert c.max_rel == pytest.approx(1e-6, rel=1e-6)


def test_reference_scale_is_the_largest_of_its_terms():
    ref = np.array([0.5, -2.0])
    assert jaxprop.reference_scale(ref, dtype="float64") == 2.0
    assert jaxprop.reference_scale(ref, dtype="float64", terms=7.0) == 7.0
    assert jaxprop.reference_scale(ref, dtype="float64", noise=1e-9, rtol=1e-10) == 10.0
    assert jaxprop.reference_scale(ref, dtype="float64", peak=1e7) == pytest.approx(10.0)
    assert jaxprop.reference_scale(np.zeros(2), dtype="float64") == np.finfo(np.float64).tiny


# ---------------------------------------------------------------------------------------------
# The public face and the documented paths stay as they are when the layout moves.

# jaxprop.__all__ as it stood before the layout by concern (issue 24): the public API.
PUBLIC = (
    "ACTIVATIONS LOSSES REGISTRY Activation Comparison Entry Example GradReport GradeReport "
    "GradientCheckError LeafReport Loss Model ModelReport NodeGrade NodeReport NodeResult Report "
    "RuleRecord RuleReport SweepResult TrainResult __version__ check_grads check_jacobian "
    "check_nodes check_rule compare custom_vjp data_mesh default_tolerances exercise_source "
    "get_activation get_model grade model_names random_point reference_scale register tap train "
    "train_sweep true_adjoints verify_entry verify_model write_exercise"
).split()


def test_the_public_api_is_pinned():
    assert jaxprop.__all__ == PUBLIC
    assert all(hasattr(jaxprop, name) for name in PUBLIC)


DOCUMENTED = re.compile(
    r"from (jaxprop(?:\.\w+)*) import ([\w, ]+)|import (jaxprop(?:\.\w+)*)|"
    r"(?<![\w/.])(jaxprop(?:\.\w+)+)"
)


def _resolves(dotted: str) -> bool:
    """``jaxprop.a.b.c``: a module, or an attribute of the longest importable module prefix."""
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_every_import_path_the_docs_name_works():
    root = PACKAGE.parent
    pages = [root / "README.md", root / "CONTRIBUTING.md", *sorted((root / "docs").rglob("*.md"))]
    broken, seen = [], set()
    for page in pages:
        if "sources" in page.parts or "bench" in page.parts:
            continue
        for m in DOCUMENTED.finditer(page.read_text()):
            if m.group(1):
                names = [n.strip() for n in m.group(2).split(",") if n.strip()]
                refs = [f"{m.group(1)}.{n}" for n in names]
            else:
                refs = [m.group(3) or m.group(4)]
            for ref in refs:
                ref = ref.rstrip(".")
                if ref not in seen:
                    seen.add(ref)
                    if not _resolves(ref):
                        broken.append(f"{page.relative_to(root)}: {ref}")
    assert len(seen) > 20  # the pages do name import paths
    assert not broken, broken


def test_the_architecture_picture_is_drawn_from_the_current_imports():
    import importlib.util

    path = PACKAGE.parent / "docs" / "gen_architecture.py"
    spec = importlib.util.spec_from_file_location("gen_architecture", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    graph = gen.imports()
    assert graph["check"] >= {"model", "nn"} and not graph["check"] & {"models", "training"}
    assert gen.OUT.read_text() == gen.svg(graph), "run: python docs/gen_architecture.py"
