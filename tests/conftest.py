import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """Each test starts with a clean Keras graph so layer names and memory don't accumulate."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    yield
