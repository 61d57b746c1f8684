"""A user's own models, by reference: ``path/to/file.py:factory`` or ``package.module:factory``.

What ``jaxprop verify --model`` and ``jaxprop train`` accept besides the built-in names. The
reference names a Python file (or an importable module) and, after the colon, an attribute of it:
a :class:`~jaxprop.Model`, an :class:`~jaxprop.Example`, a training
:class:`~jaxprop.experiments.Experiment`, a sequence of them, or a function of no arguments
returning one of those. Without ``:factory`` the module's ``models()`` is used (the convention of
the built-in model modules).

>>> import pathlib, tempfile
>>> from jaxprop.cli.load import load_entries
>>> src = '''
... import jaxprop
... def my_model():
...     return jaxprop.get_model("tanh-softmax")
... '''
>>> path = pathlib.Path(tempfile.mkdtemp()) / "mine.py"
>>> _ = path.write_text(src)
>>> [e.name for e in load_entries(f"{path}:my_model")]
['tanh-softmax']
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pathlib
import sys
import traceback
import types
from collections.abc import Sequence
from typing import Any

__all__ = ["is_reference", "load_entries", "training_experiment"]


def is_reference(name: str) -> bool:
    """Whether ``name`` refers to a user's file or module (``...py``, ``...:factory``) rather
    than naming a built-in model."""
    return name.endswith(".py") or (":" in name and not name.startswith(":"))


def _split(reference: str) -> tuple[str, str | None]:
    where, sep, attr = reference.rpartition(":")
    if not sep or "/" in attr or "\\" in attr or attr.endswith(".py"):
        return reference, None  # no factory (a colon inside a path, e.g. C:\...)
    if not attr.isidentifier():
        raise ValueError(
            f"{reference!r}: after the colon comes the name of a function or object in the file "
            f"(a Python identifier), got {attr!r}"
        )
    return where, attr


_PACKAGE = str(pathlib.Path(__file__).resolve().parent)


def _is_user_frame(filename: str) -> bool:
    """Not jaxprop's own code nor the import machinery (a user's path may well contain the word
    jaxprop, e.g. ~/jaxprop-experiments/net.py)."""
    if filename.startswith("<frozen "):
        return False
    try:
        path = str(pathlib.Path(filename).resolve())
    except (OSError, RuntimeError):
        return True
    return not path.startswith(_PACKAGE + os.sep)


def _user_error(what: str, e: BaseException) -> ValueError:
    """A user's exception as one clear line: its type, message and the line of their code."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if _is_user_frame(f.filename)]
    at = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return ValueError(f"{what} raised {type(e).__name__}: {e}{at}")


def _import(where: str) -> types.ModuleType:
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = pathlib.Path(where).expanduser()
        if not path.is_file():
            raise ValueError(
                f"no such file {str(path)!r}; give the path of a Python file with your model, "
                "e.g. --model my_net.py:make_model"
            )
        name = f"jaxprop_user_{path.stem}_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None  # a .py file always has one
        module = importlib.util.module_from_spec(spec)
        # Its own imports of files beside it work as they do when it is run as a script.
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise _user_error(f"importing {str(path)!r}", e) from None
        return module
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        raise ValueError(
            f"cannot import {where!r} ({e}); give a module on the Python path "
            "(package.module:factory) or a file (path/to/file.py:factory)"
        ) from None
    except Exception as e:
        raise _user_error(f"importing {where!r}", e) from None


def _entries_of(value: Any, where: str) -> list[Any]:
    from jaxprop.experiments import Experiment
    from jaxprop.model.contract import Model
    from jaxprop.model.example import Example

    kinds = (Model, Example, Experiment)
    if isinstance(value, kinds):
        return [value]
    if isinstance(value, Sequence) and not isinstance(value, str) and value:
        bad = [type(v).__name__ for v in value if not isinstance(v, kinds)]
        if not bad:
            return list(value)
    got = type(value).__name__
    raise ValueError(
        f"{where} gives {_a(got)}; expected a jaxprop.Model, a jaxprop.Example, a "
        "jaxprop.experiments.Experiment, a list of them, or a function of no arguments "
        "returning one"
    )


def load_entries(reference: str) -> list[Any]:
    """The models (or examples, or experiments) a reference names.

    Args:
      reference: ``path/to/file.py:factory``, ``package.module:factory``, or either without
        ``:factory`` for the module's ``models()``.

    Returns:
      A non-empty list of :class:`~jaxprop.Model`, :class:`~jaxprop.Example` or
      :class:`~jaxprop.experiments.Experiment` objects.

    Raises:
      ValueError: naming the problem: no such file or module, an exception while importing it
        or calling the factory (its type, message and line), no such attribute (the message
        lists the module's public callables), or something other than a model returned.
    """
    where, attr = _split(reference)
    module = _import(where)
    attr = attr or "models"
    if not hasattr(module, attr):
        public = sorted(n for n, v in vars(module).items() if not n.startswith("_") and callable(v))
        raise ValueError(
            f"{where!r} has no {attr!r}; its functions and classes are {public}; name one after "
            f"the colon, e.g. {where}:{public[0] if public else 'make_model'}"
        )
    value = getattr(module, attr)
    label = f"{where}:{attr}"
    if callable(value) and not _is_entry(value):
        try:
            inspect.signature(value).bind()
        except TypeError as e:
            # Asked of the signature, not guessed from a TypeError raised inside the factory.
            raise ValueError(
                f"{label} must be callable with no arguments ({e}); wrap it, e.g. "
                f"def make(): return {attr}(...)"
            ) from None
        except ValueError:
            pass  # no signature to read (a builtin): call it and see
        try:
            value = value()
        except Exception as e:
            raise _user_error(f"{label}()", e) from None
    return _entries_of(value, label)


def _is_entry(value: Any) -> bool:
    from jaxprop.experiments import Experiment
    from jaxprop.model.contract import Model
    from jaxprop.model.example import Example

    return isinstance(value, (Model, Example, Experiment))


def training_experiment(entry: Any, n_train: int = 512, n_test: int = 256) -> Any:
    """What ``jaxprop train`` runs for a user's entry: an
    :class:`~jaxprop.experiments.Experiment` as it is, or a :class:`~jaxprop.Model` with
    ``init`` and ``sample`` trained as a regression on ``n_train`` examples its ``sample`` draws
    (and ``n_test`` held out), at its ``init``'s default sizes.

    Raises:
      ValueError: for an entry training cannot use (an Example, a Model without init or
        sample), naming what is missing.
    """
    from jaxprop.check.trees import cast
    from jaxprop.experiments import Dataset, Experiment
    from jaxprop.model.contract import Model

    if isinstance(entry, Experiment):
        return entry
    if not isinstance(entry, Model):
        raise ValueError(
            f"{entry.name!r} is {_a(type(entry).__name__)}, not a network: jaxprop train needs a "
            "jaxprop.Model with init and sample, or a jaxprop.experiments.Experiment"
        )
    missing = [a for a in ("init", "sample") if getattr(entry, a) is None]
    if missing:
        raise ValueError(
            f"model {entry.name!r} has no {' and no '.join(missing)}: jaxprop train draws its "
            "parameters with init(key) and its data with sample(key, params, batch); give the "
            "Model both, or return a jaxprop.experiments.Experiment with your data"
        )

    init, sample = entry.init, entry.sample
    assert init is not None and sample is not None  # checked above

    def data() -> Dataset:
        import jax
        import numpy as np

        k_params, k_train, k_test = jax.random.split(jax.random.key(0), 3)
        params = init(k_params)
        x, Y = sample(k_train, params, n_train)
        x_test, Y_test = sample(k_test, params, n_test)
        return Dataset(np.asarray(x), np.asarray(Y), np.asarray(x_test), np.asarray(Y_test))

    return Experiment(
        name=entry.name,
        description=f"{entry.name} on {n_train} examples drawn by its sample",
        model=lambda: entry,
        data=data,
        task="regression",
        # Its own init, at its default sizes, in the run's dtype (an init need not take one).
        init=lambda model, key, dtype: cast(_init(model)(key), dtype),
    )


def _init(model: Any) -> Any:
    assert model.init is not None  # training_experiment checked it
    return model.init


def _a(noun: str) -> str:
    """``a Model``, ``an Example``."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
