"""`ImagePreprocessing`: resize raw images and scale them as a backbone expects."""

import keras

from keras_transfer.api_export import keras_transfer_export

MODES = ("tf", "torch", "caffe", "raw")

# keras.applications module -> the scaling its `preprocess_input` applies.
APPLICATION_MODES = {
    "mobilenet": "tf",
    "mobilenet_v2": "tf",
    "inception_v3": "tf",
    "inception_resnet_v2": "tf",
    "xception": "tf",
    "nasnet": "tf",
    "resnet_v2": "tf",
    "resnet": "caffe",
    "vgg16": "caffe",
    "vgg19": "caffe",
    "densenet": "torch",
    # These models scale their inputs themselves (0-255 in).
    "mobilenet_v3": "raw",
    "efficientnet": "raw",
    "efficientnet_v2": "raw",
    "convnext": "raw",
}

_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras_transfer_export("keras_transfer.backbones.ImagePreprocessing")
class ImagePreprocessing(keras.layers.Layer):
    """Resize raw images (0-255) and scale them as a pretrained model expects.

    Does in a layer, so it is saved with the model, what
    `keras.applications.<model>.preprocess_input` does, after an optional
    resize. Gray images (one channel) are repeated to three channels.

    Args:
        mode: String. One of `"tf"` (scale to [-1, 1]), `"torch"` (scale to
            [0, 1], then normalise with the ImageNet mean and std), `"caffe"`
            (RGB to BGR, subtract the ImageNet mean) or `"raw"` (no scaling:
            the model scales its inputs itself).
        image_size: Optional tuple `(height, width)`. Resize to this size
            (bilinear); None keeps the input size.
        **kwargs: Passed to `keras.layers.Layer`.

    Examples:

        >>> layer = ImagePreprocessing("tf", image_size=(4, 4))
        >>> images = np.full((1, 8, 8, 1), 255.0, "float32")
        >>> out = layer(images)
        >>> tuple(out.shape), float(out[0, 0, 0, 0])
        ((1, 4, 4, 3), 1.0)
    """

    def __init__(self, mode="tf", image_size=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        if image_size is not None:
            image_size = tuple(image_size)
            if len(image_size) != 2 or not all(
                isinstance(s, int) and s > 0 for s in image_size
            ):
                raise ValueError(
                    "`image_size` must be a tuple (height, width) of positive "
                    f"integers or None. Received: image_size={image_size!r}"
                )
        self.mode = mode
        self.image_size = image_size

    def call(self, images):
        x = keras.ops.cast(images, self.compute_dtype)
        if x.shape[-1] == 1:
            x = keras.ops.concatenate([x, x, x], axis=-1)
        if self.image_size is not None:
            x = keras.ops.image.resize(x, self.image_size, interpolation="bilinear")
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = keras.ops.convert_to_tensor(_TORCH_MEAN, self.compute_dtype)
            std = keras.ops.convert_to_tensor(_TORCH_STD, self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, self.compute_dtype)
            return keras.ops.flip(x, axis=-1) - mean
        return x

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if self.image_size is not None:
            shape[-3], shape[-2] = self.image_size
        if shape[-1] == 1:
            shape[-1] = 3
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "image_size": list(self.image_size) if self.image_size else None,
            }
        )
        return config
