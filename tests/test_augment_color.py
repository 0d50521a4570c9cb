"""The colour jitter of common.augment, the same in both frameworks' augmentation."""

import numpy as np
import pytest

from common.augment import COLOR, LUMA, ColorJitter, color_jitter

torch = pytest.importorskip("torch")

GREY_ONLY = ColorJitter(brightness=0.0, contrast=0.0, saturation=0.0, gray=1.0, gamma=0.0)
GAMMA_ONLY = ColorJitter(brightness=0.0, contrast=0.0, gamma=0.5)
COLOUR = (200.0, 30.0, 60.0)


def constant_images(n=8, value=COLOUR):
    return np.broadcast_to(np.array(value, np.float32), (n, 32, 32, 3)).copy()


def centre(images):
    return np.asarray(images)[:, 14:18, 14:18].reshape(len(images), -1, 3)


def torch_augment(images, color, seed=0):
    from torch_impl.preprocess import augment

    out = augment(
        torch.from_numpy(images.astype(np.uint8)), torch.Generator().manual_seed(seed), color
    )
    return out.numpy().astype(np.float32)


def keras_augment(images, color, seed=0):
    keras = pytest.importorskip("keras")
    from tf_impl.augment import FaceAugment

    layer = FaceAugment(seed=seed, **color.__dict__)
    return keras.ops.convert_to_numpy(layer(images, training=True))


def test_unknown_name_is_refused():
    assert color_jitter("mild") == COLOR["mild"]
    with pytest.raises(ValueError, match="unknown augment_color 'loud'"):
        color_jitter("loud")


@pytest.mark.parametrize("run", [torch_augment, keras_augment])
def test_grey_is_the_luma(run):
    out = centre(run(constant_images(), GREY_ONLY))
    luma = float(np.dot(COLOUR, LUMA))
    assert np.allclose(out, luma, atol=0.51)  # torch rounds to uint8, Keras stays float


@pytest.mark.parametrize("run", [torch_augment, keras_augment])
def test_gamma_stays_within_its_range(run):
    out = centre(run(constant_images(32, (128.0, 128.0, 128.0)), GAMMA_ONLY))[:, 0, 0]
    darkest = 255 * (128 / 255) ** np.exp(0.5)
    brightest = 255 * (128 / 255) ** np.exp(-0.5)
    assert (out >= darkest - 0.51).all() and (out <= brightest + 0.51).all()
    assert out.min() < 110 and out.max() > 146  # both over- and under-exposed


def test_mild_is_the_transform_without_colour_steps():
    """``mild`` draws no random number for saturation, grey or gamma: the same pixels as the
    augmentation of the runs made before the table."""
    from torch_impl.preprocess import augment

    images = torch.randint(0, 255, (4, 32, 32, 3), dtype=torch.uint8)
    plain = augment(images, torch.Generator().manual_seed(3))
    strong = augment(images, torch.Generator().manual_seed(3), COLOR["strong"])
    assert torch.equal(plain, augment(images, torch.Generator().manual_seed(3), COLOR["mild"]))
    assert not torch.equal(plain, strong)


def test_keras_layer_config_round_trip():
    pytest.importorskip("keras")
    from tf_impl.augment import FaceAugment

    layer = FaceAugment(seed=1, **COLOR["strong"].__dict__)
    again = FaceAugment.from_config(layer.get_config())
    assert (again.saturation, again.gray, again.gamma) == (0.4, 0.1, 0.5)
