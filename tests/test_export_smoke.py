"""Export from the first model on (keras-hub's DeepLabV3 LiteRT export fails during tracing): a model
converts to TFLite builtins and agrees."""

import numpy as np
import pytest
import tensorflow as tf

import tfseg


@pytest.mark.parametrize("name,options", [("unet", {"base_filters": 8})])
def test_model_converts_to_tflite_builtins_and_matches_keras(name, options):
    from ai_edge_litert.interpreter import Interpreter

    model = tfseg.build_model(name, 5, (65, 97, 3), **options)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    image = np.random.default_rng(0).uniform(0, 255, (1, 65, 97, 3)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = model.predict(image, verbose=0)
    assert got.shape == expected.shape == (1, 65, 97, 5)
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
