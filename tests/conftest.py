import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """Each test starts with a clean Keras graph so layer names and memory don't accumulate.

    Without the forced garbage collection (``free_memory``): with the suite's objects alive it took
    0.3-1 s per test, and 16-35 s after some training tests (finalisers), measured with a probe."""
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic dataset (16 train / 5 val images of 48x64) for training tests."""
    from tfseg.data.synthetic import write_synthetic_voc

    return write_synthetic_voc(tmp_path_factory.mktemp("synthetic"), num_train=16, num_val=5, size=(48, 64))
