"""Keras backbones built by hand in torchvision's layout: ResNet-34, ResNet-50 v1.5, MobileNetV2.

Building them layer for layer as torchvision does makes a Keras backbone the same network as
the PyTorch one, so that torchvision's ImageNet weights (and PyTorch age models) port into them
(``tf_impl.convert``) and both frameworks start from the same numbers:

* bias-free convolutions; BatchNorm with torchvision's epsilon 1e-5 and momentum (PyTorch 0.1 =
  Keras 0.9);
* 3×3 (and 7×7) convolutions pad symmetrically, as PyTorch does, by ``ZeroPadding2D`` and a
  "valid" convolution; Keras' ``padding="same"`` pads stride-2 layers on the bottom/right only,
  which shifts every feature map by a pixel;
* ResNet v1.5 bottlenecks (the stride in the 3×3 convolution; ``keras.applications.ResNet50`` is
  v1, stride in the first 1×1, with biased convolutions).

Layer names of MobileNetV2 are torchvision's state-dict prefixes with dots as underscores.
"""

from __future__ import annotations

import keras
from keras import layers

from weights import WeightsUnavailableError

BN_EPSILON = 1e-5
# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper.
SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _name(torch_prefix: str) -> str:
    return torch_prefix.replace(".", "_")


def _bn(x, prefix):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9, name=_name(prefix))(x)


def _conv_bn_relu6(x, filters, kernel, stride, prefix, depthwise=False):
    if kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=_name(prefix) + "_pad")(x)
    if depthwise:
        x = layers.DepthwiseConv2D(
            kernel, strides=stride, use_bias=False, name=_name(prefix + ".0")
        )(x)
    else:
        x = layers.Conv2D(
            filters, kernel, strides=stride, use_bias=False, name=_name(prefix + ".0")
        )(x)
    x = _bn(x, prefix + ".1")
    return layers.ReLU(6.0, name=_name(prefix) + "_relu6")(x)


def mobilenet_v2_torch_layout(input_size: int = 224) -> keras.Model:
    """MobileNetV2 (width 1.0) returning the 1280-d average-pooled features.

    Layer names are torchvision's state-dict prefixes with dots as underscores.
    """
    inputs = keras.Input((input_size, input_size, 3))
    x = _conv_bn_relu6(inputs, 32, 3, 2, "features.0")
    channels, index = 32, 1
    for t, c, n, s in SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            prefix = f"features.{index}.conv"
            y, j = x, 0
            if t != 1:
                y = _conv_bn_relu6(y, channels * t, 1, 1, f"{prefix}.0")
                j = 1
            y = _conv_bn_relu6(y, channels * t, 3, stride, f"{prefix}.{j}", depthwise=True)
            y = layers.Conv2D(c, 1, use_bias=False, name=_name(f"{prefix}.{j + 1}"))(y)
            y = _bn(y, f"{prefix}.{j + 2}")
            if stride == 1 and channels == c:
                y = layers.Add(name=_name(f"features.{index}") + "_add")([x, y])
            x, channels, index = y, c, index + 1
    x = _conv_bn_relu6(x, 1280, 1, 1, "features.18")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="mobilenet_v2")


# ------------------------------------------------------------------ ResNets in torchvision's layout
# Built by hand so that a Keras ResNet is the same network as torchvision's: bias-free
# convolutions, BatchNorm with torchvision's epsilon and momentum (PyTorch 0.1 = Keras 0.9),
# symmetric padding, and ResNet v1.5 bottlenecks (the stride in the 3×3 convolution;
# keras.applications.ResNet50 is v1, stride in the first 1×1, with biased convolutions).
# torchvision's ImageNet weights port into them (tf_impl.convert).


def _conv_bn(x, filters, kernel, stride, name, relu=True):
    # Explicit symmetric zero padding + "valid" matches PyTorch on stride 2, where Keras'
    # "same" would pad only bottom/right.
    pad = kernel // 2
    if pad:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, kernel, strides=stride, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters, stride, name):
    y = _conv_bn(x, filters, 3, stride, f"{name}_1")
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    return _residual(x, y, filters, stride, name)


def _bottleneck(x, filters, stride, name):
    y = _conv_bn(x, filters, 1, 1, f"{name}_1")
    y = _conv_bn(y, filters, 3, stride, f"{name}_2")
    y = _conv_bn(y, 4 * filters, 1, 1, f"{name}_3", relu=False)
    return _residual(x, y, 4 * filters, stride, name)


def _residual(x, y, out_filters, stride, name):
    shortcut = x
    if stride != 1 or x.shape[-1] != out_filters:
        shortcut = _conv_bn(x, out_filters, 1, stride, f"{name}_down", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def _resnet(input_size: int, blocks: list[int], block, name: str) -> keras.Model:
    inputs = keras.Input((input_size, input_size, 3))
    x = _conv_bn(inputs, 64, 7, 2, "stem")
    x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for stage, (n, filters) in enumerate(zip(blocks, [64, 128, 256, 512], strict=True)):
        for i in range(n):
            stride = 2 if i == 0 and stage > 0 else 1
            x = block(x, filters, stride, f"stage{stage + 1}_block{i + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name=name)


def resnet34_backbone(input_size: int, weights: str | None = None) -> keras.Model:
    """ResNet-34 (He et al., 2016): basic blocks [3, 4, 6, 3], global average pooled."""
    if weights is not None:
        raise WeightsUnavailableError("resnet34: ImageNet weights come from torchvision's file")
    return _resnet(input_size, [3, 4, 6, 3], _basic_block, "resnet34")


def resnet50_backbone(input_size: int, weights: str | None = None) -> keras.Model:
    """ResNet-50 v1.5 as torchvision builds it: bottlenecks [3, 4, 6, 3], average pooled."""
    if weights is not None:
        raise WeightsUnavailableError("resnet50: ImageNet weights come from torchvision's file")
    return _resnet(input_size, [3, 4, 6, 3], _bottleneck, "resnet50")


def backbone_of(model: keras.Model) -> keras.Model:
    """The backbone sub-model of an age model."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))
